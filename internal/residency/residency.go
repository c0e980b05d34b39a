// Package residency gives back resident memory that a long-running process holds only
// because it once ran: the pages of its own executable that it touched while starting,
// verifying a release or compiling a module, and will not touch again while it idles.
//
// Those pages are clean copies of the executable file. Linux keeps them mapped into the
// process after use, and maps up to 64 KiB around each page faulted in (fault-around), so
// a Go binary that once ran most of its code keeps most of its text and read-only data
// resident for the rest of its life. Dropping the process's mappings of them
// (madvise MADV_DONTNEED) costs nothing in correctness: the pages stay in the page cache,
// shared and reclaimable, and any page used again is mapped back on its next access.
//
// Only read-only, private mappings of the running executable that hold no anonymous
// (copied-on-write) page are touched, so relocated data of a dynamically linked binary is
// never reverted. Resident reports what the process holds. On systems other than Linux
// ReleaseCode does nothing and Resident cannot tell.
package residency
