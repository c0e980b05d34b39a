//go:build wasip1

package wasmfleet

import "unsafe"

// The wasmfleet host functions, exactly as in modules/ABI.md.

//go:wasmimport wasmfleet event_topic
func hostEventTopic(buf unsafe.Pointer, capacity uint32) int32

//go:wasmimport wasmfleet device_id
func hostDeviceID(buf unsafe.Pointer, capacity uint32) int32

//go:wasmimport wasmfleet config_get
func hostConfigGet(key unsafe.Pointer, keyLen uint32, buf unsafe.Pointer, capacity uint32) int32

//go:wasmimport wasmfleet publish
func hostPublish(topic unsafe.Pointer, topicLen uint32, payload unsafe.Pointer, payloadLen uint32) int32

//go:wasmimport wasmfleet log
func hostLog(level int32, msg unsafe.Pointer, msgLen uint32)

//go:wasmimport wasmfleet kv_get
func hostKVGet(key unsafe.Pointer, keyLen uint32, buf unsafe.Pointer, capacity uint32) int32

//go:wasmimport wasmfleet kv_set
func hostKVSet(key unsafe.Pointer, keyLen uint32, value unsafe.Pointer, valueLen uint32) int32

//go:wasmimport wasmfleet kv_delete
func hostKVDelete(key unsafe.Pointer, keyLen uint32) int32

//go:wasmimport wasmfleet clock_now
func hostClockNow() int64

//go:wasmimport wasmfleet random_fill
func hostRandomFill(buf unsafe.Pointer, n uint32) int32

func str(s string) (unsafe.Pointer, uint32) {
	return unsafe.Pointer(unsafe.StringData(s)), uint32(len(s))
}

func bytes(b []byte) (unsafe.Pointer, uint32) {
	return unsafe.Pointer(unsafe.SliceData(b)), uint32(len(b))
}
