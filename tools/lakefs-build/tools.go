//go:build tools

// Package tools pins cmd/lakefs so `go mod tidy` records every module it needs in go.sum.
package tools

import _ "github.com/treeverse/lakefs/cmd/lakefs"
