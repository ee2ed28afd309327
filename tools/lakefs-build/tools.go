//go:build tools

// Package tools pins cmd/lakefs and cmd/lakectl (lakeFS's client, same module and version) so
// `go mod tidy` records every module they need in go.sum.
package tools

import (
	_ "github.com/treeverse/lakefs/cmd/lakectl"
	_ "github.com/treeverse/lakefs/cmd/lakefs"
)
