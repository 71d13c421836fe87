module github.com/kdlib/tools/loaderschedule

go 1.23.0
