// Package rollout is the core of wasmfleet's rollout controller: the rollout document kept
// in the bucket, the state machine that moves a release through health-gated waves of a
// device group, and a Controller that persists, audits and publishes each step so that a
// controller killed at any point, or two controllers at once, leave a consistent rollout.
//
// It holds no S3 or MQTT client: the bucket (Store, with conditional writes), the broker
// (Publisher), the rollout key (signature.Signer), the time (Clock) and the device reports
// (Reports, fed by Tracker) are passed in. `wasmfleet serve` wires them to minio-go and
// paho; the tests use in-memory fakes of them.
//
// # The rollout document
//
// rollouts/{id}.json (Rollout; Parse is strict) holds everything: the release and the
// previous release, the group, the waves (percentages such as 1, 10, 50, 100), soak, maximum
// failure ratio, minimum devices and timeout; the state and the current wave; the sequence
// and the signed bytes of the last desired state, and whether it has been published; the
// last transition; and the lease. A controller needs nothing else to go on, so it keeps no
// state of its own: the reported side comes from the retained status messages.
//
// # States
//
//	running  ──wave judged──▶ soaking ──soak over──▶ running (next wave) … ──▶ completed
//	   │  ▲                     │
//	 pause│resume             pause
//	   ▼  │                     ▼
//	  paused ◀──────────────────┘
//	running, soaking, paused ──too many failures, or operator──▶ aborted
//
// A wave's desired state is one retained message on wasmfleet/groups/{group}/desired:
// the group's other modules unchanged, and this module with the release, the rollout id, the
// wave's percentage and the previous release for the devices outside the wave. Devices
// compute their own membership (package wave), so a rollout costs one message per wave
// (plus one to abort, and a re-signing every DesiredTTL/2), whatever the number of devices.
//
// A wave is judged on the known devices of the group that are in it (Evaluate): healthy
// (runs the release past its health window), failed (refused the desired state, failed to
// install, rolled back locally: see Judge), silent (no verdict when the timeout has passed
// since the desired state went out; counted as a failure), or pending. Since membership only
// grows, wave n's devices are judged again, with all they reported, in wave n+1.
//
// The rollout aborts as soon as failed and silent devices are more than MaxFailure of those
// with a verdict, once at least MinDevices have one (in the last wave: at most the wave's
// size, so a small group is still judged). Aborting publishes a desired state that puts
// every device of the group, 100%, on the previous release with the rollback flag set, so
// that the devices already updated install the lower version too; a module new to the group
// is left out, and agents remove it. The reason is recorded in the document and the audit.
// Aborts are checked in running, soaking and paused alike: pausing stops progress, not
// protection.
//
// When every device of the wave has a verdict (and there was no abort), the wave soaks; when
// the soak is over, the next wave opens; after the last, the rollout is completed.
//
// # Crashes
//
// Every transition is written with a conditional write before its desired state is
// published, and carries that desired state, already signed, in the same write. So:
//
//   - killed before the write: the next controller finds the previous state and decides
//     again (re-signing is harmless: nothing with that sequence went out);
//   - killed after the write, before or after publishing: it finds the signed bytes with
//     published=false and publishes them again. Byte-identical, with the same sequence,
//     agents that applied it ignore the copy (agent.onDesired compares with the kept
//     one), so no wave is skipped, repeated, or refused as a replay.
//
// Each transition also writes an audit record, audit/{time}-{id}-{step}.json (AuditKey),
// whose key and bytes come from the document's last transition alone, with a create-only
// write (If-None-Match: *). A restarted controller writes the record of the transition it
// finds before making the next one; the same key cannot be written twice, so there is no
// duplicate and no gap.
//
// # Two controllers
//
// The document's version (its ETag) is a compare-and-swap: every write says which version it
// replaces, and of two controllers that read the same version only one write succeeds; the
// other backs off and starts again from what the winner wrote on its next tick. That alone
// keeps the document from being corrupted, and the operator's pause, resume and abort use
// it in the same way (retrying on a conflict, so an operator never loses to a controller).
//
// CAS alone does not stop a controller that stalls between its write and its publish from
// publishing an old desired state over a newer one that another controller published
// meanwhile; retained messages cannot be fenced. So the document also carries a lease: the
// controller that wrote it last (Owner) holds the rollout until LeaseUntil (Options.Lease,
// 30s), and another leaves it alone until then. The lease is taken and renewed by the very
// writes that carry transitions (no lease object, no renewals while nothing happens), and
// a controller publishes only while its lease has at least a quarter of its length left.
// What remains is the usual lease assumption: clocks that agree, and no stall, to within
// Lease/4 (7.5s by default).
//
// # What it does not do
//
// One rollout per group at a time (Start refuses a second): a group's rollouts share one
// desired state and one sequence. Devices pinned by a per-device desired state, or that
// take the module from another of their groups, are counted like any device of the group.
// Reading the group's current desired state before Start (the retained message, verified)
// is the caller's job.
package rollout
