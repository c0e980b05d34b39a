;; a module of about 1.1 MiB: its data segment holds 1.1 MiB of "x". The committed source
;; keeps the segment as the placeholder string below; modules/build.sh replaces the
;; placeholder with 1153434 bytes of "x" before wat2wasm (see build.sh: too_large).
;; Build: wat2wasm too-large.wat -o too-large.wasm  (or: bash modules/build.sh)
;; Expected: With a 1MiB module size limit, Load fails with ErrModuleTooLarge before anything is parsed or compiled. (The manifest's memory, 4MiB, is enough for the segment, so size is the only problem.)
(module
  (memory (export "memory") 40)
  (func (export "wasmfleet_alloc") (param i32) (result i32) (i32.const 1024))
  (func (export "wasmfleet_handle") (param i32 i32) (result i32) (i32.const 0))
  (data (i32.const 65536) "@@PAD@@"))
