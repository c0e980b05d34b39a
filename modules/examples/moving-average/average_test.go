package main

import (
	"reflect"
	"testing"
)

func TestReading(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want float64
		bad  bool
	}{
		{in: `{"value": 31.2}`, want: 31.2},
		{in: `{"temperature": -4}`, want: -4},
		{in: `{"value": 1, "temperature": 2}`, want: 1},
		{in: `{"other": 1}`, bad: true},
		{in: `{"value": "1"}`, bad: true},
		{in: `{"value": 1`, bad: true},
	} {
		got, err := reading([]byte(tc.in))
		if (err != nil) != tc.bad || got != tc.want {
			t.Errorf("reading(%s) = %v, %v; want %v (error: %v)", tc.in, got, err, tc.want, tc.bad)
		}
	}
}

func TestWindow(t *testing.T) {
	vs := decode(nil)
	for i := 1; i <= 7; i++ {
		vs = decode(encode(push(vs, float64(i), window("5"))))
	}
	if want := []float64{3, 4, 5, 6, 7}; !reflect.DeepEqual(vs, want) {
		t.Fatalf("window = %v, want %v", vs, want)
	}
	msg, err := message("dev-1", vs)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := string(msg), `{"device":"dev-1","average":5,"count":5}`; got != want {
		t.Fatalf("message = %s, want %s", got, want)
	}
	if window("x") != defaultWindow || window("0") != defaultWindow || window("5000") != maxWindow {
		t.Fatal("window: bad config not handled")
	}
}
