#include "common/heap.hpp"

#include <malloc.h>

namespace station {

void keep_freed_heap() {
#ifdef M_TRIM_THRESHOLD
  // 32 MiB: several times the writer's working set, small beside a station's memory.
  ::mallopt(M_TRIM_THRESHOLD, 32 << 20);
#endif
}

}  // namespace station
