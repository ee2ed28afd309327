//go:build tools

// Package tools pins warp's main package so `go mod tidy` records its modules in go.sum.
package tools

import _ "github.com/minio/warp"
