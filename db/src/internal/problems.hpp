// Collects what verification finds and keeps the earliest (by journal seq) to report.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

namespace station::db {

struct Problem {
  std::optional<std::int64_t> seq;
  std::string reason;
};

class Problems {
 public:
  void add(std::optional<std::int64_t> seq, std::string reason) {
    if (!first_ || (seq && (!first_->seq || *seq < *first_->seq))) first_ = Problem{seq, std::move(reason)};
  }
  const std::optional<Problem>& first() const { return first_; }

 private:
  std::optional<Problem> first_;
};

}  // namespace station::db
