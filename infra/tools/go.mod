// Stub module: keeps `go test ./...` and `go vet ./...` in infra/ out of
// node_modules (the CDK CLI ships Go templates).
module berth-infra-tools

go 1.26
