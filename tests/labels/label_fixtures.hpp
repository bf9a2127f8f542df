// Test data and real third-party checkers for the labels suites: DPP URIs built from keys that
// the openssl command line generates (not from the station's DPP code), and decoders that are
// not ours (libzbar, zbarimg, pdftoppm, dmtxread).
#pragma once

#include <filesystem>
#include <string>
#include <vector>

#include "common/bytes.hpp"

namespace station::label_test {

struct CurveUri {
  std::string curve;  // openssl's name
  std::string uri;
};

// Every ZPL-special and DPP-allowed character an I: field may carry (%x20-3A / %x3C-7E).
inline const std::string kNastyInfo = "SN_1^2~3 !\"#$%&'()*+,-./:<=>?@[\\]`{|}_^~";

// DPP:C:81/1;M:<mac>;I:<info>;V:2;K:<base64 DER SPKI, compressed point>;; for each DPP curve
// (P-256, P-384, P-521, brainpoolP256r1/384r1/512r1), keys from `openssl genpkey`.
// Generated once per process.
const std::vector<CurveUri>& uris_on_every_curve();

// QR symbols libzbar finds in a PNG (decoded with libpng), in scan order.
std::vector<std::string> zbar_decode_png(const Bytes& png);
// Symbols zbarimg finds in an image file (QR only), one per line of its --raw output.
std::vector<std::string> zbarimg_decode(const std::filesystem::path& image);
// Renders every page of a PDF with pdftoppm at `dpi`; returns the page images in order.
std::vector<std::filesystem::path> pdf_pages(const std::filesystem::path& pdf, int dpi,
                                             const std::filesystem::path& dir);

std::string bytes_to_string(const Bytes& b);

}  // namespace station::label_test
