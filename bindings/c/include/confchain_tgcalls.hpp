/*
 * confchain for tgcalls-based apps (C++17, header only, over confchain.h).
 *
 * tgcalls applies the media frame layer itself (codec prefix, H.264 start-code widening and
 * re-encryption, Opus level trailer) and hands each frame's bytes to
 * GroupInstanceDescriptor::e2eEncryptDecrypt, which Telegram's apps route to tde2e's
 * call_encrypt / call_decrypt. makeE2eEncryptDecrypt() gives that exact callback over a confchain
 * call:
 *
 *   descriptor.e2eEncryptDecrypt = confchain::tgcalls::makeE2eEncryptDecrypt(call, rng);
 *
 * - encrypt (isEncrypt true): the bare packet encryption of `data` on channel 0 (Desktop and
 *   Android; pass CONFCHAIN_CHANNEL_SCREENCAST for the screencast instance as iOS and TDLib clients
 *   do) with `unencryptedPrefixSize` bytes left in clear; `userId` is ignored (tgcalls passes 0);
 * - decrypt: the bare packet decryption of `data` from the Telegram user `userId`;
 * - an empty vector on any error (tgcalls drops the frame): nothing is ever passed in clear.
 *
 * The callback uses the call's thread-safe media handles (sequence numbers, replay windows and
 * epoch changes shared with the call), so tgcalls may invoke it from its encoder and decoder
 * threads at once while the app keeps applying blocks to the call on its own thread. It owns the
 * handles and may outlive the call; with the call closed it returns empty vectors.
 */
#ifndef CONFCHAIN_TGCALLS_HPP
#define CONFCHAIN_TGCALLS_HPP

#include "confchain.h"

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <utility>
#include <vector>

namespace confchain {
namespace tgcalls {

/* The type of tgcalls' GroupInstanceDescriptor::e2eEncryptDecrypt. */
using E2eEncryptDecrypt = std::function<std::vector<uint8_t>(const std::vector<uint8_t> &data, int64_t userId,
                                                             bool isEncrypt, int32_t unencryptedPrefixSize)>;

/* Milliseconds of a monotonic clock: what confchain takes as `now_ms`. */
using Clock = std::function<uint64_t()>;

inline uint64_t steadyMillis() {
  return static_cast<uint64_t>(
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now().time_since_epoch())
          .count());
}

namespace detail {
struct Handles {
  confchain_media_encryptor *encryptor = nullptr;
  confchain_media_decryptor *decryptor = nullptr;
  Handles() = default;
  Handles(const Handles &) = delete;
  Handles &operator=(const Handles &) = delete;
  ~Handles() {
    confchain_media_encryptor_free(encryptor);
    confchain_media_decryptor_free(decryptor);
  }
};
}  // namespace detail

/* The callback over `call`: takes the call's media handles (the encryptor's RNG is seeded from
 * `rng`); `now` gives the milliseconds passed to confchain (a steady clock by default), `channelId`
 * the channel packets are encrypted on. Returns an empty std::function when the handles cannot be
 * made (null call or rng: see confchain_last_error). */
inline E2eEncryptDecrypt makeE2eEncryptDecrypt(confchain_call *call, confchain_rng *rng, Clock now = steadyMillis,
                                               int32_t channelId = CONFCHAIN_CHANNEL_MAIN) {
  auto handles = std::make_shared<detail::Handles>();
  if (confchain_call_media_encryptor(call, rng, &handles->encryptor) != 0 ||
      confchain_call_media_decryptor(call, &handles->decryptor) != 0) {
    return nullptr;
  }
  if (!now) now = steadyMillis;
  return [handles, now = std::move(now), channelId](const std::vector<uint8_t> &data, int64_t userId, bool isEncrypt,
                                                    int32_t unencryptedPrefixSize) -> std::vector<uint8_t> {
    std::vector<uint8_t> out;
    size_t len = 0;
    int32_t rc;
    if (isEncrypt) {
      if (unencryptedPrefixSize < 0) return {};
      out.resize(confchain_media_max_packet_size(data.size()));
      rc = confchain_media_encrypt(handles->encryptor, channelId, data.data(), data.size(),
                                   static_cast<size_t>(unencryptedPrefixSize), now(), out.data(), out.size(), &len);
    } else {
      out.resize(confchain_media_max_frame_size(data.size()));
      rc = confchain_media_decrypt(handles->decryptor, userId, data.data(), data.size(), now(), out.data(),
                                   out.size(), &len);
    }
    if (rc != 0 || len > out.size()) return {};
    out.resize(len);
    return out;
  };
}

}  // namespace tgcalls
}  // namespace confchain

#endif
