#pragma once

namespace station {

// Keeps freed heap memory in the process instead of handing the top of each thread's heap
// back to the kernel at every large free. SQLite frees blocks of 64 KiB and more at the end
// of statements; with glibc's default 128 KiB trim threshold the journal writer returned
// and refetched that memory thousands of times a second (madvise plus a TLB shootdown on
// the other core each time: 14% of the writer's time, docs/performance.md). Call once at
// the start of main(); memory stays bounded by what the process really uses at its peak.
void keep_freed_heap();

}  // namespace station
