// Package testenv starts real servers for integration tests: Mosquitto (the MQTT broker from
// Debian) and versitygw (an S3 server), each on free loopback ports (127.0.0.1 only), with
// TLS material from a throwaway CA, and the tools to hurt them: a fault-injecting proxy,
// child processes to kill, and small disks to fill. It holds no fakes: tests about our own logic use
// in-process doubles; tests about talking to a broker or a bucket use these.
//
// Every server is stopped by t.Cleanup, keeps its data in t.TempDir, and can be stopped
// (SIGTERM), killed (SIGKILL) and started again on the same ports with the same data, so a
// test can cut the broker or the object store in the middle of a stream or a download.
// Readiness is polled (a TCP dial for Mosquitto, GET /health for versitygw) with a deadline;
// nothing sleeps for a fixed time. On failure the server's log tail is in the message, and a
// failed test logs it at cleanup.
//
// The binaries are installed by `make deps` (scripts/deps.sh). A missing binary fails the
// test: it never skips, so CI cannot go green by running nothing.
//
// # Mosquitto
//
// StartMosquitto writes a mosquitto.conf: a plain listener, an optional TLS listener (with
// require_certificate for mTLS), anonymous access or a password file (written here in
// mosquitto 2.0's PBKDF2-SHA512 "$7$" format), and persistence. Mosquitto writes its
// database on a clean exit (Stop); with autosave_on_changes and autosave_interval 1 it also
// saves after every change, at the end of the event-loop iteration that handled it. So Stop
// keeps everything, while Kill right after a PUBACK can lose that last message (the save
// races the kill): a test that kills the broker and needs every message kept first makes
// one more round trip (a SUBACK or PINGRESP) after the last PUBACK. A saved QoS 1 message is
// queued again for a persistent session (clean session off, same client id) after a restart.
//
// # versitygw
//
// StartS3 runs `versitygw posix` with the root credentials in the environment, an internal
// IAM directory (--iam-dir), a /health endpoint and, when given a PKI, --cert/--key.
// ReadOnlyUser creates an account with role "user" through versitygw's admin API
// (`versitygw admin create-user`, served on the S3 port) and grants it read access to one
// bucket with a bucket policy (s3:GetObject, s3:ListBucket), so the agent can be tested with
// credentials that cannot write.
//
// # Faults, processes and full disks
//
// StartProxy puts a TCP relay in front of an HTTP server (versitygw): it records every
// request (method, path, Range) with the bytes of its answer, throttles, cuts every open
// connection at once (Cut), and injects faults into chosen requests (Fault: refuse, answer
// itself, cut or corrupt the body at an offset). GoBuild builds a command and StartProcess
// runs it as a child that a test can kill -9, stop, read the output of line by line, and
// measure (resident memory, descriptors, threads from /proc); ProcessOptions.FileSizeLimit
// sets its RLIMIT_FSIZE. SmallDisk mounts a small tmpfs (as root) for disk-full tests; where
// that is not allowed the test uses FileSizeLimit instead, and never skips.
//
// Methods that fail call t.Fatal, so call them from the test's goroutine.
package testenv
