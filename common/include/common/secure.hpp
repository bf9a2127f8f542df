// Secrets in memory: wiped when they go (OPENSSL_cleanse cannot be optimised away).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace station {

void secure_wipe(void* data, std::size_t size) noexcept;

// A byte buffer or string that wipes itself on destruction and on reassignment.
// Move-only, so a secret is never silently copied.
class SecretBytes {
 public:
  SecretBytes() = default;
  explicit SecretBytes(std::vector<std::uint8_t> bytes) noexcept : bytes_(std::move(bytes)) {}
  SecretBytes(const SecretBytes&) = delete;
  SecretBytes& operator=(const SecretBytes&) = delete;
  SecretBytes(SecretBytes&& other) noexcept : bytes_(std::move(other.bytes_)) { other.bytes_.clear(); }
  SecretBytes& operator=(SecretBytes&& other) noexcept {
    if (this != &other) {
      wipe();
      bytes_ = std::move(other.bytes_);
      other.bytes_.clear();
    }
    return *this;
  }
  ~SecretBytes() { wipe(); }

  const std::uint8_t* data() const noexcept { return bytes_.data(); }
  std::uint8_t* data() noexcept { return bytes_.data(); }
  std::size_t size() const noexcept { return bytes_.size(); }
  bool empty() const noexcept { return bytes_.empty(); }
  const std::vector<std::uint8_t>& bytes() const noexcept { return bytes_; }
  void wipe() noexcept {
    secure_wipe(bytes_.data(), bytes_.capacity());
    bytes_.clear();
  }

 private:
  std::vector<std::uint8_t> bytes_;
};

class SecretString {
 public:
  SecretString() = default;
  explicit SecretString(std::string s) noexcept : s_(std::move(s)) {}
  SecretString(const SecretString&) = delete;
  SecretString& operator=(const SecretString&) = delete;
  SecretString(SecretString&& other) noexcept : s_(std::move(other.s_)) { other.wipe(); }
  SecretString& operator=(SecretString&& other) noexcept {
    if (this != &other) {
      wipe();
      s_ = std::move(other.s_);
      other.wipe();
    }
    return *this;
  }
  ~SecretString() { wipe(); }

  const std::string& str() const noexcept { return s_; }
  bool empty() const noexcept { return s_.empty(); }
  std::size_t size() const noexcept { return s_.size(); }
  void wipe() noexcept {
    secure_wipe(s_.data(), s_.capacity());
    s_.clear();
  }

 private:
  std::string s_;
};

}  // namespace station
