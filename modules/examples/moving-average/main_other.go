//go:build !wasip1

package main

import (
	"fmt"
	"os"
)

func main() {
	fmt.Fprintln(os.Stderr, "moving-average is a wasmfleet module: build it with GOOS=wasip1 GOARCH=wasm -buildmode=c-shared (see average.go)")
	os.Exit(2)
}
