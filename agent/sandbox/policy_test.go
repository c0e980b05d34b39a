package sandbox

import "github.com/wasmfleet/wasmfleet/modules"

var policyMax256K = modules.Policy{MaxMemory: 256 * modules.KiB}
