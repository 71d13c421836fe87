module github.com/kdlib/tools/sleeper

go 1.23.0
