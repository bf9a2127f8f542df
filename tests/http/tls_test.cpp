// HTTPS: the server certificate is issued by the station's own CA (checked with openssl and
// curl against the root from `station ca show`), journaled, and its key never stored.
#include <gtest/gtest.h>

#include "http_fixture.hpp"

namespace station::test {
namespace {

TEST_F(HttpTest, TlsCertificateFromTheStationsCaVerifiesWithOpensslAndCurl) {
  http::ServerOptions o;
  o.tls = true;
  start_server(o);
  const std::string port = address_.substr(address_.rfind(':') + 1);
  const auto root = dir_->root_pem();

  const auto s_client = run({"openssl", "s_client", "-connect", address_, "-servername", "localhost", "-CAfile",
                             root.string(), "-verify_return_error", "-verify_hostname", "localhost", "-brief"},
                            {}, "");
  EXPECT_EQ(s_client.exit_code, 0) << s_client.out << s_client.err;
  EXPECT_NE((s_client.out + s_client.err).find("Verification: OK"), std::string::npos) << s_client.err;

  if (have_program("curl")) {
    const auto curl = run({"curl", "-sS", "--max-time", "30", "--cacert", root.string(), "--resolve",
                           "localhost:" + port + ":127.0.0.1", "https://localhost:" + port + "/api/health"});
    ASSERT_EQ(curl.exit_code, 0) << curl.err;
    const auto j = nlohmann::json::parse(curl.out);
    EXPECT_EQ(j["status"], "ok");
    EXPECT_FALSE(j["tls"]["serial"].get<std::string>().empty());
    // Without the station's root the certificate is not trusted.
    const auto untrusted = run({"curl", "-sS", "--max-time", "30", "--resolve", "localhost:" + port + ":127.0.0.1",
                                "https://localhost:" + port + "/api/health"});
    EXPECT_NE(untrusted.exit_code, 0);
  }
  EXPECT_EQ(count_actions("http.tls_certificate"), 1);
  EXPECT_NE(server_->tls_chain_pem().find("CERTIFICATE"), std::string::npos);
}

}  // namespace
}  // namespace station::test
