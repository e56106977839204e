// confchain_tgcalls.hpp: tgcalls' e2eEncryptDecrypt callback over two members' calls. The frame
// layer is applied as tgcalls does it (here with confchain's helpers: plaintext, validation and
// retry, trailer stripping), the callback does the bare packet work; frames round-trip, and every
// failure is an empty vector.
#include "confchain_tgcalls.hpp"

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "check.h"

using confchain::tgcalls::E2eEncryptDecrypt;
using Bytes = std::vector<uint8_t>;

static uint64_t fakeNow = 1000;

// What tgcalls' FrameTransformer does on send, with `cb` in place of the app's callback.
static Bytes tgcallsSend(const E2eEncryptDecrypt &cb, int32_t codec, const Bytes &frame, uint8_t level, bool speech,
                         int *attempts) {
  Bytes data(confchain_frame_max_plaintext_size(frame.size()));
  size_t len = 0, prefix = 0;
  ok(confchain_frame_plaintext(codec, frame.data(), frame.size(), level, speech, data.data(), data.size(), &len, &prefix),
     "plaintext");
  data.resize(len);
  for (*attempts = 1; *attempts <= static_cast<int>(CONFCHAIN_FRAME_MAX_ATTEMPTS); ++*attempts) {
    Bytes out = cb(data, 0, true, static_cast<int32_t>(prefix));
    if (out.empty()) return {};
    uint8_t valid = 0;
    ok(confchain_frame_is_valid_encrypted(codec, out.data(), out.size(), prefix, &valid), "validate");
    if (valid) return out;
  }
  return {};
}

// What tgcalls does on receive.
static Bytes tgcallsReceive(const E2eEncryptDecrypt &cb, int32_t codec, const Bytes &packet, int64_t sender,
                            confchain_received_frame *info) {
  Bytes out = cb(packet, sender, false, 0);
  if (out.empty()) return {};
  size_t len = 0;
  ok(confchain_frame_strip_received(codec, out.data(), out.size(), &len, info), "strip");
  out.resize(len);
  return out;
}

int main() {
  uint8_t seed[32] = {29};
  confchain_rng *rng;
  ok(confchain_rng_new(seed, &rng), "rng");
  confchain_private_key *keys[3];
  confchain_participant members[3];
  for (int i = 0; i < 3; i++) {
    ok(confchain_private_key_generate(rng, &keys[i]), "key");
    members[i].user_id = 100 + i;
    members[i].flags = 3;
    members[i].version = 0;
    ok(confchain_private_key_public(keys[i], &members[i].public_key), "public");
  }
  confchain_bytes zero;
  // Alice (100) and Bob (101) are members; Carol (102) has a call of another conference.
  ok(confchain_call_create_zero_block(keys[0], members, 2, 0, rng, &zero), "zero block");
  uint32_t magic;
  std::memcpy(&magic, zero.data, 4), magic++, std::memcpy(zero.data, &magic, 4);
  confchain_call *alice, *bob, *carol;
  ok(confchain_call_create(100, keys[0], zero.data, zero.len, rng, &alice), "alice");
  ok(confchain_call_create(101, keys[1], zero.data, zero.len, rng, &bob), "bob");
  confchain_bytes other;
  ok(confchain_call_create_zero_block(keys[2], members + 2, 1, 0, rng, &other), "other zero block");
  std::memcpy(&magic, other.data, 4), magic++, std::memcpy(other.data, &magic, 4);
  ok(confchain_call_create(102, keys[2], other.data, other.len, rng, &carol), "carol");

  auto clock = [] { return fakeNow; };
  E2eEncryptDecrypt a = confchain::tgcalls::makeE2eEncryptDecrypt(alice, rng, clock);
  E2eEncryptDecrypt b = confchain::tgcalls::makeE2eEncryptDecrypt(bob, rng, clock);
  E2eEncryptDecrypt c = confchain::tgcalls::makeE2eEncryptDecrypt(carol, rng);
  CHECK(a && b && c, "callbacks made");
  CHECK(!confchain::tgcalls::makeE2eEncryptDecrypt(nullptr, rng), "a null call gives an empty callback");

  // The bare callback: prefix in clear, round trip, user id on encrypt ignored.
  Bytes data = {'H', 'D', 'R', 'p', 'a', 'y', 'l', 'o', 'a', 'd'};
  Bytes packet = a(data, 12345, true, 3);
  CHECK(packet.size() > data.size() && std::memcmp(packet.data(), "HDR", 3) == 0, "prefix in clear");
  CHECK(b(packet, 100, false, 0) == data, "bob decrypts alice's packet");
  // Failures are empty vectors: a replay, the wrong sender, another conference, garbage, a prefix
  // longer than the data, a negative prefix.
  CHECK(b(packet, 100, false, 0).empty(), "replay refused");
  CHECK(b(a(data, 0, true, 0), 101, false, 0).empty(), "wrong sender refused");
  CHECK(c(a(data, 0, true, 0), 100, false, 0).empty(), "another conference cannot decrypt");
  CHECK(b(Bytes(200, 7), 100, false, 0).empty(), "garbage refused");
  CHECK(b(Bytes(), 100, false, 0).empty(), "empty packet refused");
  CHECK(a(data, 0, true, 11).empty(), "prefix longer than the data refused");
  CHECK(a(data, 0, true, -1).empty(), "negative prefix refused");

  // The frame layer around it, as tgcalls applies it: Opus with its level, VP8 key frame, H.264.
  int attempts = 0;
  confchain_received_frame info{};
  Bytes opus = {0x78, 0x01, 0x02, 0x03, 0x04};
  Bytes sent = tgcallsSend(a, CONFCHAIN_CODEC_OPUS, opus, 17, true, &attempts);
  CHECK(!sent.empty() && attempts == 1, "opus sent");
  Bytes got = tgcallsReceive(b, CONFCHAIN_CODEC_OPUS, sent, 100, &info);
  CHECK(got == opus && info.has_level && info.level == 17 && info.speech == 1, "opus received with its level");
  Bytes vp8(3000);
  for (size_t i = 0; i < vp8.size(); i++) vp8[i] = static_cast<uint8_t>(i * 7 + 1);
  vp8[0] = 0x10;  // key frame (P bit clear): 10 bytes in clear
  sent = tgcallsSend(a, CONFCHAIN_CODEC_VP8, vp8, 0, false, &attempts);
  CHECK(!sent.empty() && std::memcmp(sent.data(), vp8.data(), 10) == 0, "vp8 key frame header in clear");
  got = tgcallsReceive(b, CONFCHAIN_CODEC_VP8, sent, 100, &info);
  CHECK(got == vp8 && !info.has_level, "vp8 received");
  // SPS, PPS (4-byte start codes), an IDR slice behind a 3-byte start code (widened to 4).
  Bytes h264 = {0, 0, 0, 1, 0x67, 0x42, 0xc0, 0x1e, 0xda, 0, 0, 0, 1, 0x68, 0xce, 0x01, 0x0f, 0x20, 0, 0, 1, 0x65, 0x88, 0x84};
  for (int i = 0; i < 20000; i++) h264.push_back(static_cast<uint8_t>((i * 131 + 7) % 251 + 1));
  Bytes widened(confchain_frame_max_plaintext_size(h264.size()));
  size_t wlen = 0, prefix = 0;
  ok(confchain_frame_plaintext(CONFCHAIN_CODEC_H264, h264.data(), h264.size(), 0, 0, widened.data(), widened.size(),
                               &wlen, &prefix),
     "h264 plaintext");
  widened.resize(wlen);
  CHECK(wlen == h264.size() + 1 && prefix > 22, "h264: the slice's 3-byte start code widened, %zu bytes in clear", prefix);
  int retried = 0, frames = 0;
  for (; frames < 300; frames++) {
    sent = tgcallsSend(a, CONFCHAIN_CODEC_H264, h264, 0, false, &attempts);
    CHECK(!sent.empty() && std::memcmp(sent.data(), widened.data(), prefix) == 0, "h264 sent, prefix in clear");
    retried += attempts > 1;
    got = tgcallsReceive(b, CONFCHAIN_CODEC_H264, sent, 100, &info);
    CHECK(got == widened, "h264 received: the widened frame");
    fakeNow += 10;
  }

  // Thread-safe: two threads encrypt through Alice's callback while Bob decrypts.
  std::vector<Bytes> packets(2 * 200);
  std::thread t1([&] {
    for (int i = 0; i < 200; i++) packets[2 * i] = a(Bytes(500, static_cast<uint8_t>(i)), 0, true, 1);
  });
  std::thread t2([&] {
    for (int i = 0; i < 200; i++) packets[2 * i + 1] = a(Bytes(500, static_cast<uint8_t>(i)), 0, true, 1);
  });
  t1.join(), t2.join();
  int decrypted = 0;
  for (auto &p : packets) decrypted += b(p, 100, false, 0).size() == 500;
  CHECK(decrypted == 400, "%d of 400 packets from two threads decrypted", decrypted);

  // The callback outlives the call; closing the call's side is the app's business, not a crash.
  confchain_call_free(alice);
  Bytes late = a(data, 0, true, 0);
  CHECK(b(late, 100, false, 0) == data || late.empty(), "after the call is freed: still the member's key, or empty");

  confchain_call_free(bob);
  confchain_call_free(carol);
  for (auto *k : keys) confchain_private_key_free(k);
  confchain_bytes_free(zero);
  confchain_bytes_free(other);
  a = b = c = nullptr;
  confchain_rng_free(rng);
  std::printf("tgcalls callback: %d H.264 frames, %d needed a retry\n", frames, retried);
  return report();
}
