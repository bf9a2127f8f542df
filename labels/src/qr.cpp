#include "labels/qr.hpp"

#include <dmtx.h>

#include <cerrno>
#include <string>

#include "common/error.hpp"
#include "internal/handles.hpp"

namespace station::labels {
namespace {

QRecLevel level(Ecc e) {
  switch (e) {
    case Ecc::L: return QR_ECLEVEL_L;
    case Ecc::M: return QR_ECLEVEL_M;
    case Ecc::Q: return QR_ECLEVEL_Q;
    case Ecc::H: return QR_ECLEVEL_H;
  }
  return QR_ECLEVEL_M;
}

struct DmtxEncodeOwner {
  DmtxEncode* enc = nullptr;
  DmtxEncodeOwner() : enc(::dmtxEncodeCreate()) {}
  DmtxEncodeOwner(const DmtxEncodeOwner&) = delete;
  DmtxEncodeOwner& operator=(const DmtxEncodeOwner&) = delete;
  ~DmtxEncodeOwner() {
    if (enc != nullptr) ::dmtxEncodeDestroy(&enc);
  }
};

}  // namespace

Matrix encode_qr(std::string_view data, Ecc ecc) {
  // QRcode_encodeData: the whole input in 8-bit byte mode, version chosen automatically (0).
  internal::QrCodePtr code(::QRcode_encodeData(static_cast<int>(data.size()),
                                               reinterpret_cast<const unsigned char*>(data.data()), 0,
                                               level(ecc)));
  if (!code) {
    const int err = errno;
    throw Error(Errc::invalid_argument,
                "cannot encode " + std::to_string(data.size()) + " bytes as a QR code at ECC " +
                    std::string(to_string(ecc)) + " (more than version 40 holds?)",
                err);
  }
  Matrix m;
  m.width = m.height = code->width;
  const auto n = static_cast<std::size_t>(code->width) * static_cast<std::size_t>(code->width);
  m.dark.resize(n);
  for (std::size_t i = 0; i < n; ++i) m.dark[i] = code->data[i] & 1U;  // bit 0: dark module
  return m;
}

int qr_side_for_bytes(std::size_t bytes, Ecc ecc) {
  // In byte mode the version depends only on the length, so any filler of that length will do.
  return encode_qr(std::string(bytes, 'x'), ecc).width;
}

Matrix encode_datamatrix(std::string_view data) {
  DmtxEncodeOwner owner;
  if (owner.enc == nullptr) throw Error(Errc::internal, "libdmtx: dmtxEncodeCreate failed");
  ::dmtxEncodeSetProp(owner.enc, DmtxPropModuleSize, 1);
  ::dmtxEncodeSetProp(owner.enc, DmtxPropMarginSize, 0);
  ::dmtxEncodeSetProp(owner.enc, DmtxPropSizeRequest, DmtxSymbolSquareAuto);
  std::string copy(data);  // dmtxEncodeDataMatrix takes a non-const pointer
  if (copy.empty() ||
      ::dmtxEncodeDataMatrix(owner.enc, static_cast<int>(copy.size()),
                             reinterpret_cast<unsigned char*>(copy.data())) != DmtxPass) {
    throw Error(Errc::invalid_argument,
                "cannot encode " + std::to_string(data.size()) + " bytes as a DataMatrix symbol");
  }
  DmtxImage* img = owner.enc->image;
  Matrix m;
  m.width = owner.enc->region.symbolCols;
  m.height = owner.enc->region.symbolRows;
  m.dark.resize(static_cast<std::size_t>(m.width) * static_cast<std::size_t>(m.height));
  for (int y = 0; y < m.height; ++y) {
    for (int x = 0; x < m.width; ++x) {
      int v = 255;
      // libdmtx images have their origin bottom-left.
      ::dmtxImageGetPixelValue(img, x, m.height - 1 - y, 0, &v);
      m.dark[static_cast<std::size_t>(y * m.width + x)] = v < 128 ? 1 : 0;
    }
  }
  return m;
}

}  // namespace station::labels
