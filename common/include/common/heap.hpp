#pragma once

namespace station {

// Keeps freed heap memory in the process instead of handing the top of each thread's heap
// back to the kernel whenever a free leaves 64 KiB or more free beside it. SQLite's frees at
// the end of statements do; with glibc's default 128 KiB trim threshold the journal writer
// gave memory back and fetched it again after most of its statements (madvise plus a TLB
// shootdown on the other core each time: 14% of the writer's time, docs/performance.md).
// Call once at the start of main(); memory stays bounded by what the process uses at its
// peak plus the threshold per arena.
void keep_freed_heap();

}  // namespace station
