// Package spool owns the local event spool: an append-only NDJSON queue that
// the hook writes under a lock and the shipper drains.
//
// # Layout (format 1)
//
//	VERSION              format number and spool_id, written once
//	lock                 flock(2) target; also holds the seq counter and boot id
//	queue.ndjson         the active file; appended to under the lock
//	pending/<seq>.ndjson chunks rotated out of the queue; immutable. <seq> is
//	                     the counter at rotation, so it bounds the seqs inside
//	fallback/*.ndjson    one event per file, written without the lock when it
//	                     was not free in time; the shipper numbers them
//	quarantine/*.bad     raw lines that could not be read, kept for a person
//	shipper.state        the shipper's acknowledgement progress and the seq
//	                     high-water mark of deleted chunks
//	sessions/<id>-<dev>  the hook's session_uid for a live ocserv worker
//
// Every file is opened relative to the spool directory's descriptor with
// O_NOFOLLOW and created with an explicit mode (fchmod after create, so the
// inherited umask never decides). A spool directory that others can write,
// or that belongs to another user, is refused.
//
// # Appends
//
// Append takes the lock (waiting at most Options.LockWait), numbers the
// event, writes the line with one write(2) to queue.ndjson, releases the
// lock and only then fsyncs: concurrent writers' fsyncs coalesce and the
// lock is held for microseconds, not for a disk flush. The event is durable
// when Append returns.
//
// seq is allocated under the lock from the counter in the lock file, which
// is rewritten on every append but never fsynced. The counter is trusted
// only while the boot id stored beside it is the running kernel's; after a
// reboot (the only way an unsynced write can be lost) the first writer
// recovers it as the maximum of the counter, the shipper's high-water mark,
// the newest chunk's name and the last seq in the queue's tail.
//
// # Crash states and what happens to each
//
//   - A torn last line in queue.ndjson (writer killed mid-write, or the disk
//     filled): the next append starts with a '\n', so the torn bytes become a
//     line of their own; the reader reports it as malformed and the shipper
//     quarantines it. A write that fails is also truncated back at once.
//   - A seq taken but no line written (writer killed between): a gap, the
//     only kind of gap allowed.
//   - The counter behind the lines on disk (power loss): recovered as above.
//   - fallback/.tmp-* (writer killed before its rename): the event was never
//     committed; RemoveStaleTemp deletes these after a grace period.
//   - fallback/*.taken (shipper killed while numbering a fallback event):
//     IngestFallback looks for its event_id in the queue and newest chunk and
//     either finishes the job or just deletes the marker, so the event is
//     taken in exactly once.
//   - queue.ndjson renamed into pending/ but shipper.state not yet updated:
//     progress is keyed by inode, which a rename keeps.
//   - shipper.state saved without a chunk's entry but the chunk not yet
//     deleted: the chunk is sent again; JetStream's duplicate window and
//     the event_id make that harmless.
//   - shipper.state unreadable: treated as empty (everything is re-sent).
//   - VERSION missing: a new spool_id is made at the next append.
package spool
