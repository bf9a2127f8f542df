// labels_bench: rendering cost per label (not a test; for docs/labels.md and issue 11).
// Usage: labels_bench [seconds-per-measurement]
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <string>

#include "labels/render.hpp"

namespace {

double rate(const std::function<void(int)>& fn, double seconds) {
  using clock = std::chrono::steady_clock;
  int n = 0;
  const auto t0 = clock::now();
  double elapsed = 0;
  while (elapsed < seconds) {
    for (int k = 0; k < 64; ++k) fn(n++);
    elapsed = std::chrono::duration<double>(clock::now() - t0).count();
  }
  return n / elapsed;
}

}  // namespace

int main(int argc, char** argv) {
  using namespace station::labels;
  const double secs = argc > 1 ? std::atof(argv[1]) : 1.0;
  LabelData d;
  d.uri = "DPP:C:81/1;M:2ccf67158817;V:2;K:MDkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDIgACH/bVKOIqu6MdvjapELv4z/"
          "wiR72RLKVLzznKbEymx3c=;;";
  d.serial = "ACME-2026-000000";
  d.mac = "2ccf67158817";
  d.model = "Widget Pro";
  d.date = "2026-11-22";
  d.batch = "WO-2026-017";
  d.fixture = "3";
  auto vary = [&](int i) {
    const std::string n = std::to_string(i % 1000000);
    d.serial.replace(d.serial.size() - n.size(), n.size(), n);
  };
  const Template t203 = builtin_template("default");
  const ZplRenderer zpl(t203);
  std::string out;
  std::printf("zpl_per_s %.0f\n", rate([&](int i) { vary(i); zpl.render(d, out); }, secs));
  for (int dpi : supported_dpis) {
    const Template t = t203.with_dpi(dpi);
    std::printf("png_%d_per_s %.0f\n", dpi, rate([&](int i) { vary(i); (void)render_png(t, d); }, secs));
  }
  std::printf("pdf_per_s %.0f\n", rate([&](int i) { vary(i); (void)render_pdf(t203, std::span(&d, 1)); }, secs));
  return 0;
}
