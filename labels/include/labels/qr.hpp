// Symbol encoders: QR (libqrencode, byte mode) and DataMatrix ECC 200 (libdmtx), as module
// matrices the renderers draw.
#pragma once

#include <cstdint>
#include <string_view>
#include <vector>

#include "labels/template.hpp"

namespace station::labels {

struct Matrix {
  int width = 0;
  int height = 0;
  std::vector<std::uint8_t> dark;  // row-major, 1 = dark module
  bool at(int x, int y) const noexcept { return dark[static_cast<std::size_t>(y * width + x)] != 0; }
};

// Byte mode, the smallest version that holds the data at `ecc` (ISO/IEC 18004 §7.4.5).
// Throws Error(invalid_argument) when the data exceeds version 40.
Matrix encode_qr(std::string_view data, Ecc ecc);
// The side in modules (without quiet zone) encode_qr() gives for `bytes` bytes of data.
int qr_side_for_bytes(std::size_t bytes, Ecc ecc);

// ECC 200, smallest square symbol (ISO/IEC 16022). Throws Error(invalid_argument) when too long.
Matrix encode_datamatrix(std::string_view data);

}  // namespace station::labels
