// Strict reading of one TOML table: typed getters that name the key in errors, and a final
// check that refuses every key nobody read (config sections reject unknown keys).
#pragma once

#include <set>
#include <string>
#include <string_view>

#include <toml++/toml.h>

#include "common/error.hpp"

namespace station::labels::internal {

[[noreturn]] inline void fail(const std::string& key, const std::string& why) {
  throw Error(Errc::config_error, key + ": " + why);
}

class Reader {
 public:
  Reader(const toml::table& t, std::string where) : t_(t), where_(std::move(where)) {}
  ~Reader() = default;
  Reader(const Reader&) = delete;
  Reader& operator=(const Reader&) = delete;

  std::string key(std::string_view k) const { return where_.empty() ? std::string(k) : where_ + "." + std::string(k); }

  const toml::node* get(std::string_view k) {
    seen_.insert(std::string(k));
    return t_.get(k);
  }
  void number(std::string_view k, double& out) {
    if (const toml::node* n = get(k)) {
      if (const auto* f = n->as_floating_point()) out = f->get();
      else if (const auto* i = n->as_integer()) out = static_cast<double>(i->get());
      else fail(key(k), "expected a number (millimetres)");
    }
  }
  template <class Int>
  void integer(std::string_view k, Int& out) {
    if (const toml::node* n = get(k)) {
      const auto* i = n->as_integer();
      if (i == nullptr) fail(key(k), "expected an integer");
      if (i->get() < 0) fail(key(k), "must not be negative");
      out = static_cast<Int>(i->get());
    }
  }
  void string(std::string_view k, std::string& out) {
    if (const toml::node* n = get(k)) {
      const auto* s = n->as_string();
      if (s == nullptr) fail(key(k), "expected a string");
      out = s->get();
    }
  }
  bool has(std::string_view k) const { return t_.contains(k); }
  // Call last: every key must have been read.
  void no_unknown_keys() const {
    for (auto&& [k, v] : t_) {
      if (!seen_.contains(std::string(k.str()))) fail(key(k.str()), "unknown key");
    }
  }

 private:
  const toml::table& t_;
  std::string where_;
  std::set<std::string> seen_;
};

}  // namespace station::labels::internal
