// Package kwok pins the kwok controller (sigs.k8s.io/kwok) as a Go tool of this module,
// so `go build sigs.k8s.io/kwok/cmd/kwok` here builds exactly the version in go.mod.
package kwok
