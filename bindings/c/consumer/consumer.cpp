// A C++17 program that uses confchain as an installed package (find_package(confchain)).
#include <confchain.h>
#include <confchain_tgcalls.hpp>

#include <cstdio>
#include <cstring>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

namespace {

void check(int32_t rc, const char *what) {
  if (rc != 0) {
    char msg[256];
    confchain_last_error(reinterpret_cast<uint8_t *>(msg), sizeof msg);
    throw std::runtime_error(std::string(what) + ": " + msg);
  }
}

struct RngDeleter {
  void operator()(confchain_rng *p) const { confchain_rng_free(p); }
};
struct KeyDeleter {
  void operator()(confchain_private_key *p) const { confchain_private_key_free(p); }
};
struct CallDeleter {
  void operator()(confchain_call *p) const { confchain_call_free(p); }
};

std::vector<uint8_t> take(confchain_bytes b) {
  std::vector<uint8_t> v(b.data, b.data + b.len);
  confchain_bytes_free(b);
  return v;
}

}  // namespace

int main() {
  try {
    uint8_t seed[32] = {5};
    confchain_rng *raw_rng = nullptr;
    check(confchain_rng_new(seed, &raw_rng), "rng");
    std::unique_ptr<confchain_rng, RngDeleter> rng(raw_rng);

    std::unique_ptr<confchain_private_key, KeyDeleter> keys[2];
    confchain_participant members[2] = {};
    for (int i = 0; i < 2; i++) {
      confchain_private_key *k = nullptr;
      check(confchain_private_key_generate(rng.get(), &k), "key");
      keys[i].reset(k);
      members[i].user_id = i + 1;
      members[i].flags = 3;
      check(confchain_private_key_public(k, &members[i].public_key), "public key");
    }
    confchain_bytes zero_raw;
    check(confchain_call_create_zero_block(keys[0].get(), members, 2, 0, rng.get(), &zero_raw), "zero block");
    std::vector<uint8_t> zero = take(zero_raw);
    uint32_t magic;
    std::memcpy(&magic, zero.data(), 4);
    magic += 1;  // as the server returns it
    std::memcpy(zero.data(), &magic, 4);

    std::unique_ptr<confchain_call, CallDeleter> calls[2];
    for (int i = 0; i < 2; i++) {
      confchain_call *c = nullptr;
      check(confchain_call_create(i + 1, keys[i].get(), zero.data(), zero.size(), rng.get(), &c), "call");
      calls[i].reset(c);
    }
    const std::string frame = "C++17 frame";
    confchain_bytes packet, plain;
    check(confchain_call_encrypt(calls[0].get(), 0, reinterpret_cast<const uint8_t *>(frame.data()), frame.size(), 0, 0,
                                 rng.get(), &packet),
          "encrypt");
    std::vector<uint8_t> p = take(packet);
    check(confchain_call_decrypt(calls[1].get(), 1, p.data(), p.size(), 0, &plain), "decrypt");
    std::vector<uint8_t> out = take(plain);
    std::printf("confchain %s from C++17: %s\n", confchain_version(), std::string(out.begin(), out.end()).c_str());
    // The installed C++ header: tgcalls' e2eEncryptDecrypt callback over each call.
    auto alice = confchain::tgcalls::makeE2eEncryptDecrypt(calls[0].get(), rng.get());
    auto bob = confchain::tgcalls::makeE2eEncryptDecrypt(calls[1].get(), rng.get());
    const std::vector<uint8_t> data(frame.begin(), frame.end());
    if (!alice || !bob || bob(alice(data, 0, true, 3), 1, false, 0) != data) return 1;
    return std::string(out.begin(), out.end()) == frame ? 0 : 1;
  } catch (const std::exception &e) {
    std::fprintf(stderr, "%s\n", e.what());
    return 1;
  }
}
