// libFuzzer target: the frame decoder and every message decoder behind it, on both sides.
// Arbitrary bytes go through FrameDecoder (streaming, split at a fuzzer-chosen point);
// every frame it yields must re-encode to bytes that decode to the same frame, and its
// payload goes through the station's decoders and through the simulated device.
#include <cstddef>
#include <cstdint>
#include <vector>

#include "common/error.hpp"
#include "fixtures/frame.hpp"
#include "fixtures/messages.hpp"
#include "simdevice/device.hpp"

namespace fx = station::fixtures;

namespace {

void try_decoders(const fx::Frame& f) {
  const station::ByteView p = f.payload;
  try {
    switch (f.type & 0x7F) {
      case 0x01: (f.type & 0x80) ? (void)fx::decode_hello_response(p) : (void)fx::decode_hello_request(p); break;
      case 0x02: (f.type & 0x80) ? (void)fx::decode_genkey_response(p) : (void)fx::decode_genkey_request(p); break;
      case 0x03: (f.type & 0x80) ? (void)fx::decode_put_response(p) : (void)fx::decode_put_request(p); break;
      case 0x04: (f.type & 0x80) ? (void)fx::decode_commit_response(p) : (void)fx::decode_commit_request(p); break;
      case 0x05: (f.type & 0x80) ? (void)fx::decode_get_response(p) : (void)fx::decode_get_request(p); break;
      case 0x06: (f.type & 0x80) ? (void)fx::decode_challenge_response(p) : (void)fx::decode_challenge_request(p); break;
      case 0x07: (void)fx::decode_lock_response(p); break;
      case 0x7F: (void)fx::decode_error_response(p); break;
      default: fx::decode_empty(p); break;
    }
  } catch (const station::Error& e) {
    if (e.code() != station::Errc::parse_error) __builtin_trap();
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  const std::size_t split = data[0] % (size + 1);
  const station::ByteView in(data + 1, size - 1);
  fx::FrameDecoder decoder(1024);
  decoder.feed(in.first(std::min(split, in.size())));
  decoder.feed(in.subspan(std::min(split, in.size())));
  decoder.feed(station::ByteView());
  std::vector<fx::Frame> frames;
  while (auto ev = decoder.next()) {
    if (ev->error != fx::FrameError::none) continue;
    // Round trip: what decodes must re-encode to something that decodes identically.
    const station::Bytes again = fx::encode_frame(ev->frame);
    const auto back = fx::decode_frame(station::ByteView(again).first(again.size() - 1), 1024);
    if (back.error != fx::FrameError::none || !(back.frame == ev->frame)) __builtin_trap();
    try_decoders(ev->frame);
    frames.push_back(std::move(ev->frame));
  }
  // The device side: a fresh in-memory device must answer every frame without crashing.
  static fx::sim::LineOptions options;
  fx::sim::Line line(options);
  fx::sim::Endpoint endpoint(line);
  std::vector<fx::sim::Output> out;
  endpoint.receive(in, out);
  return 0;
}
