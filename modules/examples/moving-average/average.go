// Command moving-average is a wasmfleet handler/v1 module in Go: it keeps the last N readings
// (config window, default 5) in kv and publishes their average to averages/{device} on every
// event as {"device":"<id>","average":21.5,"count":3}.
//
// The payload is a JSON object with a number under "value" or "temperature". A payload that
// is not such an object is a handler failure (nothing is stored or published).
//
// Build (from the repository root; or bash modules/build.sh):
//
//	GOOS=wasip1 GOARCH=wasm go build -trimpath -buildvcs=false -buildmode=c-shared -ldflags='-s -w -buildid=' \
//		-o modules/examples/moving-average/moving-average.wasm ./modules/examples/moving-average
//
// This file holds the logic, which builds and is tested on any platform; main_wasip1.go
// wires it to the host.
package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// defaultWindow is used when config has no valid window.
const defaultWindow = 5

// maxWindow bounds the window so the kv value stays small.
const maxWindow = 1000

// reading extracts the number under "value" (or else "temperature") from a JSON payload.
func reading(payload []byte) (float64, error) {
	var r struct {
		Value       *float64 `json:"value"`
		Temperature *float64 `json:"temperature"`
	}
	if err := json.Unmarshal(payload, &r); err != nil {
		return 0, fmt.Errorf("payload: %w", err)
	}
	switch {
	case r.Value != nil:
		return *r.Value, nil
	case r.Temperature != nil:
		return *r.Temperature, nil
	}
	return 0, errors.New(`payload: no number under "value" or "temperature"`)
}

// window parses config window ("" or invalid: the default).
func window(s string) int {
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 {
		return defaultWindow
	}
	return min(n, maxWindow)
}

// decode reads the values stored in kv: numbers separated by commas.
func decode(stored []byte) []float64 {
	var vs []float64
	for _, f := range strings.Split(string(stored), ",") {
		if v, err := strconv.ParseFloat(f, 64); err == nil {
			vs = append(vs, v)
		}
	}
	return vs
}

// encode is the inverse of decode.
func encode(vs []float64) []byte {
	var b []byte
	for i, v := range vs {
		if i > 0 {
			b = append(b, ',')
		}
		b = strconv.AppendFloat(b, v, 'g', -1, 64)
	}
	return b
}

// push appends v and keeps the last n values.
func push(vs []float64, v float64, n int) []float64 {
	vs = append(vs, v)
	if len(vs) > n {
		vs = vs[len(vs)-n:]
	}
	return vs
}

// message is the JSON published for the values vs on device.
func message(device string, vs []float64) ([]byte, error) {
	sum := 0.0
	for _, v := range vs {
		sum += v
	}
	return json.Marshal(struct {
		Device  string  `json:"device"`
		Average float64 `json:"average"`
		Count   int     `json:"count"`
	}{device, sum / float64(len(vs)), len(vs)})
}
