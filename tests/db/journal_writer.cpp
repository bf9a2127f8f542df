// Test helper: appends journal entries to DB forever, printing "seq hash" for each one
// as soon as commit() has returned (acknowledged). The durability test SIGKILLs it.
#include <cstdio>

#include "db/journal.hpp"

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: journal_writer DB\n");
    return 2;
  }
  station::db::Journal journal(argv[1], "st-kill");
  for (int k = 0;; ++k) {
    const auto e = journal.commit({"op", "note", "kill-test", {{"k", k}}});
    std::printf("%lld %s\n", static_cast<long long>(e.seq), e.hash.c_str());
    std::fflush(stdout);
  }
}
