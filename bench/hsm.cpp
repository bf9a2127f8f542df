// Part 1, the HSM limit: ECDSA P-256 signatures per second on a fresh SoftHSM2 token through
// the station's own layer (pki::Hsm: session pool, key handle cache, checked calls, DER
// conversion) and through the raw function list, 1 and 2 threads; and session key pairs
// per second both ways. The difference is the layer's own overhead.
#include <barrier>
#include <thread>

#include "bench.hpp"
#include "common/secure.hpp"
#include "pki/pkcs11.hpp"

namespace station::bench {
namespace {

using Op = std::function<void()>;

// Runs make_op() on each of `threads` threads for `seconds`; operations per second.
double rate(unsigned threads, double seconds, const std::function<Op()>& make_op) {
  std::vector<std::uint64_t> counts(threads, 0);
  std::barrier start(static_cast<std::ptrdiff_t>(threads + 1));
  std::atomic<bool> stop{false};
  std::vector<std::thread> pool;
  for (unsigned t = 0; t < threads; ++t)
    pool.emplace_back([&, t] {
      Op op = make_op();
      op();  // warm: the session and the key handle are made before the clock starts
      start.arrive_and_wait();
      while (!stop.load(std::memory_order_relaxed)) {
        op();
        ++counts[t];
      }
    });
  start.arrive_and_wait();
  const auto t0 = Clock::now();
  std::this_thread::sleep_for(std::chrono::duration<double>(seconds));
  stop = true;
  for (auto& th : pool) th.join();
  const double elapsed = seconds_since(t0);
  std::uint64_t total = 0;
  for (const auto c : counts) total += c;
  return static_cast<double>(total) / elapsed;
}

void raw_check(CK_RV rv, const char* what) {
  if (rv != CKR_OK) throw Error(Errc::hsm_error, std::string("raw ") + what + " failed: " + pki::p11::rv_name(rv));
}

// A raw session of its own on the token (the application is logged in already).
struct RawSession {
  RawSession(CK_FUNCTION_LIST* f, CK_SLOT_ID slot) : fl(f) {
    raw_check(fl->C_OpenSession(slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, nullptr, nullptr, &h), "C_OpenSession");
  }
  ~RawSession() { fl->C_CloseSession(h); }
  RawSession(const RawSession&) = delete;
  RawSession& operator=(const RawSession&) = delete;
  CK_FUNCTION_LIST* fl;
  CK_SESSION_HANDLE h = CK_INVALID_HANDLE;
};

CK_OBJECT_HANDLE raw_find_key(CK_FUNCTION_LIST* fl, CK_SESSION_HANDLE s, Bytes id) {
  CK_OBJECT_CLASS cls = CKO_PRIVATE_KEY;
  CK_ATTRIBUTE t[] = {{CKA_CLASS, &cls, sizeof cls}, {CKA_ID, id.data(), id.size()}};
  raw_check(fl->C_FindObjectsInit(s, t, 2), "C_FindObjectsInit");
  CK_OBJECT_HANDLE h = CK_INVALID_HANDLE;
  CK_ULONG n = 0;
  raw_check(fl->C_FindObjects(s, &h, 1, &n), "C_FindObjects");
  raw_check(fl->C_FindObjectsFinal(s), "C_FindObjectsFinal");
  if (n != 1) throw Error(Errc::not_found, "raw: the issuing key is not on the token");
  return h;
}

const Bytes kP256Params = {0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07};

}  // namespace

nlohmann::json run_hsm(const fs::path& work, const HsmOptions& o) {
  const fs::path dir = work / "hsm-station";
  make_station(dir, false);
  core::Station station(dir, std::nullopt);
  const auto issuing = station.records().active_ca("issuing");
  if (!issuing) throw Error(Errc::not_found, "bench: no issuing CA");
  const std::string key_id = issuing->key_id;
  auto& hsm = station.hsm();
  const Bytes digest = sha256(as_bytes(std::string("station benchmark: a device certificate's TBS")));

  nlohmann::json out;
  // Through the layer.
  for (unsigned threads : {1U, 2U}) {
    out["sign_per_s"]["layer"][std::to_string(threads)] =
        rate(threads, o.seconds, [&] { return Op([&] { (void)hsm.sign_digest(key_id, digest); }); });
  }
  // The raw function list of the same module (already initialised and logged in).
  const auto module = pki::p11::Module::load(station.config().hsm.module);
  CK_FUNCTION_LIST* fl = module->fl();
  const CK_SLOT_ID slot = module->find_token(station.config().hsm.token_label);
  const Bytes id = *hex_decode(key_id);
  for (unsigned threads : {1U, 2U}) {
    out["sign_per_s"]["raw"][std::to_string(threads)] = rate(threads, o.seconds, [&] {
      auto s = std::make_shared<RawSession>(fl, slot);
      const CK_OBJECT_HANDLE key = raw_find_key(fl, s->h, id);
      return Op([s, key, fl, &digest] {
        CK_MECHANISM mech{CKM_ECDSA, nullptr, 0};
        unsigned char sig[132];
        CK_ULONG len = sizeof sig;
        raw_check(fl->C_SignInit(s->h, &mech, key), "C_SignInit");
        raw_check(fl->C_Sign(s->h, const_cast<CK_BYTE*>(digest.data()), digest.size(), sig, &len), "C_Sign");
      });
    });
  }

  // Session key pairs (CKA_TOKEN false: per-device keys must never be token objects, which
  // SoftHSM2 writes to disk), made and destroyed, through the layer's session and checked
  // calls, then raw.
  out["keygen_per_s"]["layer"] = rate(1, o.seconds, [&] {
    auto s = std::make_shared<pki::p11::Session>(module, slot, true);
    return Op([s] {
      using pki::p11::Attr;
      std::vector<Attr> pub{{CKA_TOKEN, false}, {CKA_VERIFY, true}, {CKA_EC_PARAMS, ByteView(kP256Params)}};
      std::vector<Attr> priv{{CKA_TOKEN, false}, {CKA_PRIVATE, true}, {CKA_SENSITIVE, true}, {CKA_SIGN, true}};
      auto pub_t = pki::p11::raw_template(pub);
      auto priv_t = pki::p11::raw_template(priv);
      CK_MECHANISM mech{CKM_EC_KEY_PAIR_GEN, nullptr, 0};
      CK_OBJECT_HANDLE hpub = CK_INVALID_HANDLE, hpriv = CK_INVALID_HANDLE;
      P11_CALL(s->fl(), C_GenerateKeyPair, s->handle(), &mech, pub_t.data(), pub_t.size(), priv_t.data(),
               priv_t.size(), &hpub, &hpriv);
      P11_CALL(s->fl(), C_DestroyObject, s->handle(), hpriv);
      P11_CALL(s->fl(), C_DestroyObject, s->handle(), hpub);
    });
  });
  out["keygen_per_s"]["raw"] = rate(1, o.seconds, [&] {
    auto s = std::make_shared<RawSession>(fl, slot);
    return Op([s, fl] {
      CK_BBOOL no = CK_FALSE, yes = CK_TRUE;
      CK_ATTRIBUTE pub[] = {{CKA_TOKEN, &no, 1}, {CKA_VERIFY, &yes, 1},
                            {CKA_EC_PARAMS, const_cast<std::uint8_t*>(kP256Params.data()), kP256Params.size()}};
      CK_ATTRIBUTE priv[] = {{CKA_TOKEN, &no, 1}, {CKA_PRIVATE, &yes, 1}, {CKA_SENSITIVE, &yes, 1}, {CKA_SIGN, &yes, 1}};
      CK_MECHANISM mech{CKM_EC_KEY_PAIR_GEN, nullptr, 0};
      CK_OBJECT_HANDLE hpub = CK_INVALID_HANDLE, hpriv = CK_INVALID_HANDLE;
      raw_check(fl->C_GenerateKeyPair(s->h, &mech, pub, 3, priv, 4, &hpub, &hpriv), "C_GenerateKeyPair");
      fl->C_DestroyObject(s->h, hpriv);
      fl->C_DestroyObject(s->h, hpub);
    });
  });
  out["seconds_per_measurement"] = o.seconds;
  return out;
}

}  // namespace station::bench
