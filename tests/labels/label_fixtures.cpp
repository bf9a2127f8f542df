#include "label_fixtures.hpp"

#include <png.h>
#include <zbar.h>

#include <algorithm>
#include <memory>
#include <mutex>
#include <sstream>
#include <stdexcept>

#include "support.hpp"

namespace station::label_test {

using station::test::run;
using station::base64_encode;
using station::as_bytes;

std::string bytes_to_string(const Bytes& b) { return {b.begin(), b.end()}; }

const std::vector<CurveUri>& uris_on_every_curve() {
  static std::vector<CurveUri> uris;
  static std::once_flag once;
  std::call_once(once, [] {
    const char* curves[] = {"P-256", "P-384", "P-521", "brainpoolP256r1", "brainpoolP384r1", "brainpoolP512r1"};
    int n = 0;
    for (const char* curve : curves) {
      const auto key = run({"openssl", "genpkey", "-algorithm", "EC", "-pkeyopt",
                            std::string("ec_paramgen_curve:") + curve});
      if (key.exit_code != 0) throw std::runtime_error("openssl genpkey " + std::string(curve) + ": " + key.err);
      const auto spki =
          run({"openssl", "pkey", "-pubout", "-outform", "DER", "-ec_conv_form", "compressed"}, {}, key.out);
      if (spki.exit_code != 0 || spki.out.empty()) throw std::runtime_error("openssl pkey: " + spki.err);
      char mac[13];
      std::snprintf(mac, sizeof mac, "02a0b1c2d3%02x", n++);
      uris.push_back({curve, "DPP:C:81/1,6,11;M:" + std::string(mac) + ";I:" + kNastyInfo + ";V:2;K:" +
                                 base64_encode(as_bytes(spki.out)) + ";;"});
    }
  });
  return uris;
}

std::vector<std::string> zbar_decode_png(const Bytes& png) {
  png_image img{};
  img.version = PNG_IMAGE_VERSION;
  if (png_image_begin_read_from_memory(&img, png.data(), png.size()) == 0) {
    throw std::runtime_error(std::string("libpng: ") + img.message);
  }
  img.format = PNG_FORMAT_GRAY;
  std::vector<unsigned char> gray(PNG_IMAGE_SIZE(img));
  if (png_image_finish_read(&img, nullptr, gray.data(), 0, nullptr) == 0) {
    throw std::runtime_error(std::string("libpng: ") + img.message);
  }
  using namespace zbar;  // zbar.h declares its C API in namespace zbar under C++
  std::unique_ptr<zbar_image_scanner_t, decltype(&zbar_image_scanner_destroy)> scanner(
      zbar_image_scanner_create(), zbar_image_scanner_destroy);
  zbar_image_scanner_set_config(scanner.get(), ZBAR_NONE, ZBAR_CFG_ENABLE, 0);
  zbar_image_scanner_set_config(scanner.get(), ZBAR_QRCODE, ZBAR_CFG_ENABLE, 1);
  std::unique_ptr<zbar_image_t, decltype(&zbar_image_destroy)> zimg(zbar_image_create(), zbar_image_destroy);
  zbar_image_set_format(zimg.get(), zbar_fourcc('Y', '8', '0', '0'));
  zbar_image_set_size(zimg.get(), img.width, img.height);
  zbar_image_set_data(zimg.get(), gray.data(), gray.size(), nullptr);
  zbar_scan_image(scanner.get(), zimg.get());
  std::vector<std::string> out;
  for (const zbar_symbol_t* s = zbar_image_first_symbol(zimg.get()); s != nullptr; s = zbar_symbol_next(s)) {
    out.emplace_back(zbar_symbol_get_data(s), zbar_symbol_get_data_length(s));
  }
  return out;
}

std::vector<std::string> zbarimg_decode(const std::filesystem::path& image) {
  const auto r = run({"zbarimg", "--raw", "-q", "-Sdisable", "-Sqrcode.enable", image.string()});
  std::vector<std::string> out;
  std::istringstream in(r.out);
  for (std::string line; std::getline(in, line);) out.push_back(line);
  return out;
}

std::vector<std::filesystem::path> pdf_pages(const std::filesystem::path& pdf, int dpi,
                                             const std::filesystem::path& dir) {
  const auto prefix = dir / (pdf.stem().string() + "-page");
  const auto r = run({"pdftoppm", "-r", std::to_string(dpi), "-gray", "-png", pdf.string(), prefix.string()});
  if (r.exit_code != 0) throw std::runtime_error("pdftoppm: " + r.err);
  std::vector<std::filesystem::path> pages;
  for (const auto& e : std::filesystem::directory_iterator(dir)) {
    if (e.path().filename().string().rfind(prefix.filename().string(), 0) == 0) pages.push_back(e.path());
  }
  std::sort(pages.begin(), pages.end());  // pdftoppm zero-pads page numbers
  return pages;
}

}  // namespace station::label_test
