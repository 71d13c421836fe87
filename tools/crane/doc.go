// Package crane pins crane (github.com/google/go-containerregistry) as a Go tool of this
// module, so `go build github.com/google/go-containerregistry/cmd/crane` here builds exactly
// the version in go.mod. kdlib uses it to pull Kubedirect's published control-plane images.
package crane
