// Package store is the agent's on-device module store: content-addressed wasm blobs, the
// verified release envelopes that name them, the highest trust file the device has verified,
// and the agent's state (what is active, what to fall back to, which desired-state sequence
// was applied). Everything survives a power cut at any instant: a reader, and the agent after
// a restart, sees either the old content of a file or the new, never a mix.
//
// # Layout
//
// Under the data directory (directories 0700, files 0600):
//
//	lock                          held (flock) while a Store is open: one agent per directory
//	state.json                    State, replaced atomically (internal/atomicfile)
//	state.json.corrupt-<time>     a state.json that could not be read, moved aside by Open
//	trust.json                    the highest trust-file envelope the device verified
//	blobs/sha256/<hex>            a module, named by the lowercase hex SHA-256 of its bytes
//	blobs/sha256/<hex>.unverified a download in progress; kept across restarts so it resumes
//	blobs/sha256/<hex>.corrupt-<time>  a blob whose bytes no longer match its name
//	releases/<name>@<version>@<hex>.dsse.json  a release envelope, named by its ReleaseRef
//	releases/<...>.corrupt-<time> a release file that no longer parses as its ReleaseRef
//	.<file>.tmp-<random>          a temporary file of an atomic write; removed by Open
//
// A blob only gets its final name in CommitBlob, after its digest has been checked: nothing
// reads a *.unverified file as a module. Release files are named by the whole reference
// (name, version and digest), so two envelopes that claim the same name and version for
// different bytes never overwrite each other.
//
// # What it does not do
//
// The store checks digests, not signatures. It keeps release and trust envelopes that the
// caller has verified with package signing, and it checks that a release envelope names the
// reference it is filed under, but whoever can write the data directory can replace them:
// verify envelopes read back from the store before trusting them again (it is cheap). The
// blobs need no such care, since Blob re-hashes every read.
//
// It does not download anything: the fetcher appends to the file Partial names and calls
// CommitBlob when it is done. Nor does it decide what to keep: GC removes what neither the
// state nor the caller's keep set mentions.
//
// # Concurrency
//
// A Store is safe for concurrent use. Hashing and reading happen outside its lock; renames,
// removals, GC and state updates are serialized. Two writers of the same *.unverified file
// are the caller's business.
package store
