package sandbox

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"time"

	"github.com/rs/zerolog"
	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"

	"github.com/wasmfleet/wasmfleet/agent/kv"
	"github.com/wasmfleet/wasmfleet/agent/sandbox/internal/rewrite"
	"github.com/wasmfleet/wasmfleet/protocol/topic"
)

// HostModule is the import module name of the handler/v1 host functions.
const HostModule = "wasmfleet"

// Per-event bounds on logging (ABI.md).
const (
	maxLogLines = 32
	maxLogLine  = 1024
	maxRandom   = 64 << 10
)

// hostFunc is one host function: its name, types and implementation.
type hostFunc struct {
	name    string
	params  []api.ValueType
	results []api.ValueType
	fn      func(e *event, mod api.Module, stack []uint64)
}

var (
	i32 = api.ValueTypeI32
	i64 = api.ValueTypeI64
)

func hostFuncs() []hostFunc {
	return []hostFunc{
		{"event_topic", []api.ValueType{i32, i32}, []api.ValueType{i32}, func(e *event, mod api.Module, s []uint64) {
			s[0] = e.copyOut(mod, []byte(e.ev.Topic), s[0], s[1])
		}},
		{"device_id", []api.ValueType{i32, i32}, []api.ValueType{i32}, func(e *event, mod api.Module, s []uint64) {
			s[0] = e.copyOut(mod, []byte(e.m.r.cfg.DeviceID), s[0], s[1])
		}},
		{"config_get", []api.ValueType{i32, i32, i32, i32}, []api.ValueType{i32}, func(e *event, mod api.Module, s []uint64) {
			key := e.read(mod, s[0], s[1])
			v, ok := e.m.manifest.Config[string(key)]
			if !ok {
				s[0] = notFound
				return
			}
			s[0] = e.copyOut(mod, []byte(v), s[2], s[3])
		}},
		{"publish", []api.ValueType{i32, i32, i32, i32}, []api.ValueType{i32}, func(e *event, mod api.Module, s []uint64) {
			t := e.read(mod, s[0], s[1])
			payload := e.read(mod, s[2], s[3])
			if string(t) == e.inst.topic && len(t) > 0 {
				// The same topic as the instance's last publish, already checked.
				e.record(e.inst.topic, payload)
			} else {
				e.publish(string(t), payload)
				e.inst.topic = string(t)
			}
			s[0] = 0
		}},
		{"log", []api.ValueType{i32, i32, i32}, nil, func(e *event, mod api.Module, s []uint64) {
			msg := e.read(mod, s[1], s[2])
			e.log(int32(s[0]), msg)
		}},
		{"kv_get", []api.ValueType{i32, i32, i32, i32}, []api.ValueType{i32}, func(e *event, mod api.Module, s []uint64) {
			tx := e.kv()
			v, ok := tx.Get(string(e.read(mod, s[0], s[1])))
			if !ok {
				s[0] = notFound
				return
			}
			s[0] = e.copyOut(mod, v, s[2], s[3])
		}},
		{"kv_set", []api.ValueType{i32, i32, i32, i32}, []api.ValueType{i32}, func(e *event, mod api.Module, s []uint64) {
			tx := e.kv()
			key := e.read(mod, s[0], s[1])
			val := e.read(mod, s[2], s[3])
			if err := tx.Set(string(key), val); err != nil {
				if errors.Is(err, kv.ErrQuota) {
					e.stop(fmt.Errorf("%w: %v", ErrQuota, err))
				} else {
					e.stop(fmt.Errorf("%w: kv_set: %v", ErrBadPointer, err))
				}
			}
			s[0] = 0
		}},
		{"kv_delete", []api.ValueType{i32, i32}, []api.ValueType{i32}, func(e *event, mod api.Module, s []uint64) {
			tx := e.kv()
			tx.Delete(string(e.read(mod, s[0], s[1])))
			s[0] = 0
		}},
		{"clock_now", nil, []api.ValueType{i64}, func(e *event, mod api.Module, s []uint64) {
			e.need(e.m.manifest.Capabilities.Clock, "clock")
			s[0] = uint64(time.Now().UnixNano())
		}},
		{"random_fill", []api.ValueType{i32, i32}, []api.ValueType{i32}, func(e *event, mod api.Module, s []uint64) {
			e.need(e.m.manifest.Capabilities.Random, "random")
			e.checkDeadline()
			if uint32(s[1]) > maxRandom {
				e.stop(fmt.Errorf("%w: random_fill of %d bytes (at most %d a call)", ErrBadPointer, uint32(s[1]), maxRandom))
			}
			buf := e.writable(mod, s[0], s[1]) // a view of guest memory
			if _, err := rand.Read(buf); err != nil {
				e.stop(fmt.Errorf("%w: random_fill: %v", ErrTrap, err))
			}
			s[0] = 0
		}},
	}
}

// notFound is -1 as an i32 result.
const notFound = uint64(0xFFFFFFFF)

func instantiateHost(ctx context.Context, rt wazero.Runtime) (api.Module, error) {
	b := rt.NewHostModuleBuilder(HostModule)
	for _, h := range hostFuncs() {
		h := h
		b.NewFunctionBuilder().
			WithGoModuleFunction(api.GoModuleFunc(func(ctx context.Context, mod api.Module, stack []uint64) {
				e, ok := ctx.Value(eventKey{}).(*event)
				if !ok {
					panic(fmt.Errorf("%w: %s called outside an event", ErrTrap, h.name))
				}
				e.spend(hostCallFuel)
				h.fn(e, mod, stack)
			}), h.params, h.results).
			Export(h.name)
	}
	return b.Instantiate(ctx)
}

// instantiateYield instantiates the import that the rewrite adds to every module.
func instantiateYield(ctx context.Context, rt wazero.Runtime) (api.Module, error) {
	return rt.NewHostModuleBuilder(rewrite.YieldModule).NewFunctionBuilder().
		WithGoModuleFunction(api.GoModuleFunc(func(ctx context.Context, mod api.Module, _ []uint64) {
			e, ok := ctx.Value(eventKey{}).(*event)
			if !ok {
				panic(fmt.Errorf("%w: guest code ran outside an event", ErrTrap))
			}
			e.yield()
		}), nil, nil).
		Export(rewrite.YieldName).
		Instantiate(ctx)
}

// stop ends the event with err: it is recorded and the host function panics, which wazero
// turns into the call's error.
func (e *event) stop(err error) {
	e.fail(err)
	panic(violation{err})
}

// need ends the event with ErrCapability unless granted.
func (e *event) need(granted bool, capability string) {
	if !granted {
		e.stop(fmt.Errorf("%w: the manifest does not grant %q", ErrCapability, capability))
	}
}

func (e *event) kv() *kv.Tx {
	e.need(e.tx != nil, "kv")
	return e.tx
}

// read returns a view of guest memory [ptr, ptr+n), or ends the event with ErrBadPointer.
func (e *event) read(mod api.Module, ptr, n uint64) []byte {
	mem := mod.Memory()
	if mem == nil {
		e.stop(fmt.Errorf("%w: module has no memory", ErrBadPointer))
	}
	b, ok := mem.Read(uint32(ptr), uint32(n))
	if !ok {
		e.stop(fmt.Errorf("%w: [%#x, +%d) is outside the module's %d bytes of memory", ErrBadPointer, uint32(ptr), uint32(n), mem.Size()))
	}
	if len(b) >= rewrite.BulkBytesPerFuel {
		e.spend(int32(len(b) / rewrite.BulkBytesPerFuel))
	}
	return b
}

// writable is read for memory the host function is about to write: it is recorded as written.
func (e *event) writable(mod api.Module, ptr, n uint64) []byte {
	b := e.read(mod, ptr, n)
	e.inst.wrote(uint64(uint32(ptr)), uint64(len(b)))
	return b
}

// copyOut writes min(len(v), cap) bytes of v at buf and returns len(v).
func (e *event) copyOut(mod api.Module, v []byte, buf, capacity uint64) uint64 {
	dst := e.writable(mod, buf, capacity)
	copy(dst, v)
	return uint64(uint32(len(v)))
}

// publish checks and records one outgoing message.
func (e *event) publish(t string, payload []byte) {
	m := e.m
	if err := topic.ValidateName(t); err != nil {
		e.stop(fmt.Errorf("%w: %v", ErrForbiddenTopic, err))
	}
	if !m.mayPublish(t) {
		e.stop(fmt.Errorf("%w: %q is not in the module's publish capability %q", ErrForbiddenTopic, t, m.manifest.Capabilities.Publish))
	}
	e.record(t, payload)
}

// record records one outgoing message to a topic that passed publish's checks, within the
// event's bounds.
func (e *event) record(t string, payload []byte) {
	m := e.m
	if len(e.out) >= m.limits.MaxPublishes {
		e.stop(fmt.Errorf("%w: more than %d publishes in one event", ErrPublishLimit, m.limits.MaxPublishes))
	}
	if e.outSize+len(payload) > int(m.limits.MaxOutput) {
		e.stop(fmt.Errorf("%w: more than %s of output in one event", ErrOutputLimit, m.limits.MaxOutput))
	}
	e.outSize += len(payload)
	e.out = append(e.out, Message{Topic: t, Payload: append([]byte(nil), payload...)})
}

// log writes one guest log line if the module may log, within the per-event bounds.
func (e *event) log(level int32, msg []byte) {
	m := e.m
	if !m.manifest.Capabilities.Log {
		return
	}
	if e.logs >= maxLogLines {
		m.logsDropped.Add(1)
		return
	}
	e.logs++
	if len(msg) > maxLogLine {
		msg = msg[:maxLogLine]
	}
	lvl := zerolog.InfoLevel
	switch level {
	case 0:
		lvl = zerolog.DebugLevel
	case 2:
		lvl = zerolog.WarnLevel
	case 3:
		lvl = zerolog.ErrorLevel
	}
	m.r.cfg.Log.WithLevel(lvl).Str("module", m.manifest.Name).Str("version", m.manifest.Version).Bytes("msg", trimNewline(msg)).Msg("module log")
}

func trimNewline(b []byte) []byte {
	for len(b) > 0 && (b[len(b)-1] == '\n' || b[len(b)-1] == '\r') {
		b = b[:len(b)-1]
	}
	return b
}
