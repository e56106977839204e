/* The media frame layer through the C ABI: tgcalls' vectors (vectors/frames/, converted to lines
 * by test.sh), frames of every codec through a call and through the media handles, the Opus level,
 * the typed drops (CONFCHAIN_KIND_FRAME_START_CODE, CONFCHAIN_KIND_FRAME_EMPTY), and buffers
 * checked before anything is consumed.
 *
 * Vector lines (hex, "-" for empty, "null" for none):
 *   send NAME PT CODEC LEVEL SPEECH FRAME DATA PREFIX NCALLS NFAKE FAKE... SENT
 *   recv NAME PT CODEC DECRYPTED DELIVERED LEVEL SPEECH     (LEVEL, SPEECH -1 for null)
 *   to_byte LINEAR_F32_BITS SPEECH LEVEL BYTE              (LEVEL -1 when not given)
 *   from_byte BYTE LINEAR_F32_BITS */
#include "check.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
  uint8_t *data;
  size_t len;
  int null;
} hex;

static hex unhex(const char *s) {
  hex h = {NULL, 0, 0};
  if (!s || !strcmp(s, "null")) {
    h.null = 1;
    return h;
  }
  if (!strcmp(s, "-")) return h;
  size_t n = strlen(s) / 2;
  h.data = malloc(n ? n : 1);
  for (size_t i = 0; i < n; i++) {
    unsigned v;
    sscanf(s + 2 * i, "%2x", &v);
    h.data[i] = (uint8_t)v;
  }
  h.len = n;
  return h;
}

static int same(const uint8_t *a, size_t alen, const hex *b) {
  return !b->null && alen == b->len && (alen == 0 || !memcmp(a, b->data, alen));
}

static int32_t codec_of(const char *name) {
  if (!strcmp(name, "opus")) return CONFCHAIN_CODEC_OPUS;
  if (!strcmp(name, "vp8")) return CONFCHAIN_CODEC_VP8;
  if (!strcmp(name, "h264")) return CONFCHAIN_CODEC_H264;
  return CONFCHAIN_CODEC_UNKNOWN;
}

static int vectors_run = 0;

/* A float from the hex of its IEEE-754 bits (big-endian, as the vector files write them). */
static float f32_of(const char *hex_bits) {
  uint32_t bits = (uint32_t)strtoul(hex_bits, NULL, 16);
  float f;
  memcpy(&f, &bits, sizeof f);
  return f;
}

static void send_vector(char **f, int n) {
  const char *name = f[1];
  int pt = atoi(f[2]);
  int32_t codec = codec_of(f[3]);
  CHECK(confchain_frame_codec_from_payload_type((uint8_t)pt) == codec, "%s: payload type %d is %s", name, pt, f[3]);
  uint8_t level = (uint8_t)atoi(f[4]), speech = (uint8_t)atoi(f[5]);
  hex frame = unhex(f[6]), data = unhex(f[7]);
  long prefix = atol(f[8]);
  int ncalls = atoi(f[9]), nfake = atoi(f[10]);
  if (n != 12 + nfake) {
    CHECK(0, "%s: malformed line", name);
    return;
  }
  size_t cap = confchain_frame_max_plaintext_size(frame.len), len = 0, got_prefix = 0;
  uint8_t *plain = malloc(cap ? cap : 1);
  ok(confchain_frame_plaintext(codec, frame.data, frame.len, level, speech, plain, cap, &len, &got_prefix), name);
  if (ncalls > 0)
    CHECK(same(plain, len, &data) && (long)got_prefix == prefix, "%s: call_encrypt data/prefix (%zu bytes, prefix %zu, want %ld)",
          name, len, got_prefix, prefix);
  /* tgcalls' loop over the fake call_encrypt outputs. */
  int calls = 0;
  hex *sent = NULL;
  hex fakes[16];
  for (int i = 0; i < nfake && i < 16; i++) fakes[i] = unhex(f[11 + i]);
  for (int i = 0; i < (int)CONFCHAIN_FRAME_MAX_ATTEMPTS && i < nfake; i++) {
    calls++;
    if (fakes[i].len == 0) break;
    uint8_t valid = 0;
    ok(confchain_frame_is_valid_encrypted(codec, fakes[i].data, fakes[i].len, got_prefix, &valid), name);
    if (valid) {
      sent = &fakes[i];
      break;
    }
  }
  hex want = unhex(f[11 + nfake]);
  CHECK(calls == ncalls, "%s: %d call_encrypt calls, tgcalls made %d", name, calls, ncalls);
  if (want.null)
    CHECK(!sent, "%s: tgcalls dropped the frame", name);
  else
    CHECK(sent && same(sent->data, sent->len, &want), "%s: the packet tgcalls sent", name);
  for (int i = 0; i < nfake && i < 16; i++) free(fakes[i].data);
  free(plain), free(frame.data), free(data.data), free(want.data);
  vectors_run++;
}

static void receive_vector(char **f) {
  const char *name = f[1];
  int32_t codec = codec_of(f[3]);
  CHECK(confchain_frame_codec_from_payload_type((uint8_t)atoi(f[2])) == codec, "%s: payload type", name);
  hex decrypted = unhex(f[4]), delivered = unhex(f[5]);
  int level = atoi(f[6]), speech = atoi(f[7]);
  if (decrypted.len == 0) {
    /* call_decrypt failed: tgcalls delivers nothing. */
    CHECK(delivered.null, "%s: a failed decryption delivers nothing", name);
  } else {
    size_t len = 0;
    confchain_received_frame info = {9, 9, 9};
    ok(confchain_frame_strip_received(codec, decrypted.data, decrypted.len, &len, &info), name);
    if (delivered.null) {
      /* Delivered by nobody: the receiver drops it (an empty frame). */
      CHECK(len == 0, "%s: dropped, %zu bytes left", name, len);
    } else {
      CHECK(same(decrypted.data, len, &delivered), "%s: delivered frame (%zu bytes)", name, len);
    }
    if (level < 0)
      CHECK(!info.has_level, "%s: no level", name);
    else
      CHECK(info.has_level && info.level == level && info.speech == speech, "%s: level %d speech %d (got %d %d %d)", name,
            level, speech, info.has_level, info.level, info.speech);
  }
  free(decrypted.data), free(delivered.data);
  vectors_run++;
}

static int run_vectors(const char *path) {
  FILE *in = fopen(path, "r");
  if (!in) return 0;
  char *line = NULL;
  size_t cap = 0;
  while (getline(&line, &cap, in) > 0) {
    char *f[64];
    int n = 0;
    for (char *t = strtok(line, " \n"); t && n < 64; t = strtok(NULL, " \n")) f[n++] = t;
    if (n == 0) continue;
    if (!strcmp(f[0], "send") && n >= 12)
      send_vector(f, n);
    else if (!strcmp(f[0], "recv") && n == 8)
      receive_vector(f);
    else if (!strcmp(f[0], "to_byte") && n == 5) {
      float linear = f32_of(f[1]);
      uint8_t level = confchain_audio_level_from_linear(linear);
      uint8_t byte = confchain_audio_level_to_byte(level, (uint8_t)atoi(f[2]));
      CHECK(atoi(f[3]) < 0 || level == atoi(f[3]), "level of linear %g (%s): %d, want %s", linear, f[1], level, f[3]);
      CHECK(byte == atoi(f[4]), "byte of linear %g (%s): %d, want %s", linear, f[1], byte, f[4]);
      vectors_run++;
    } else if (!strcmp(f[0], "from_byte") && n == 3) {
      float linear = confchain_audio_level_to_linear((uint8_t)(atoi(f[1]) & 0x7f)), want = f32_of(f[2]);
      CHECK(fabsf(linear - want) <= 1e-6f * want, "linear of byte %s: %g, want %g", f[1], linear, want);
      vectors_run++;
    } else
      CHECK(0, "unreadable vector line starting %s", f[0]);
  }
  free(line);
  fclose(in);
  return vectors_run;
}

/* A zero block of `n` members (server form). */
static confchain_bytes zero_block(confchain_private_key **keys, confchain_participant *m, int n, confchain_rng *rng) {
  confchain_bytes zero;
  ok(confchain_call_create_zero_block(keys[0], m, (size_t)n, 0, rng, &zero), "zero block");
  uint32_t magic;
  memcpy(&magic, zero.data, 4), magic++, memcpy(zero.data, &magic, 4);
  return zero;
}

int main(int argc, char **argv) {
  int nvec = argc > 1 ? run_vectors(argv[1]) : 0;

  uint8_t seed[32] = {41};
  confchain_rng *rng;
  ok(confchain_rng_new(seed, &rng), "rng");
  confchain_private_key *keys[2];
  confchain_participant members[2];
  for (int i = 0; i < 2; i++) {
    ok(confchain_private_key_generate(rng, &keys[i]), "key");
    members[i].user_id = i + 1;
    members[i].flags = 3;
    members[i].version = 0;
    ok(confchain_private_key_public(keys[i], &members[i].public_key), "public");
  }
  confchain_bytes zero = zero_block(keys, members, 2, rng);
  confchain_call *alice, *bob;
  ok(confchain_call_create(1, keys[0], zero.data, zero.len, rng, &alice), "alice");
  ok(confchain_call_create(2, keys[1], zero.data, zero.len, rng, &bob), "bob");
  confchain_media_encryptor *enc;
  confchain_media_decryptor *dec;
  ok(confchain_call_media_encryptor(alice, rng, &enc), "encryptor");
  ok(confchain_call_media_decryptor(bob, &dec), "decryptor");

  /* Codec mapping. */
  CHECK(confchain_frame_codec_from_payload_type(111) == CONFCHAIN_CODEC_OPUS, "111 opus");
  CHECK(confchain_frame_codec_from_payload_type(100) == CONFCHAIN_CODEC_VP8, "100 vp8");
  CHECK(confchain_frame_codec_from_payload_type(104) == CONFCHAIN_CODEC_H264, "104 h264");
  CHECK(confchain_frame_codec_from_payload_type(CONFCHAIN_PAYLOAD_TYPE_VP9) == CONFCHAIN_CODEC_UNKNOWN, "vp9 unknown");
  CHECK(!strcmp(confchain_frame_codec_name(CONFCHAIN_CODEC_H264), "h264"), "name");

  /* Opus through the call, with its level; and through the media handles. */
  static uint8_t packet[100000], out[100000];
  size_t plen = 0, flen = 0;
  confchain_sent_frame sent = {0, 0};
  confchain_received_frame info = {0, 0, 0};
  const uint8_t opus[] = {0x78, 1, 2, 3};
  ok(confchain_call_encrypt_frame(alice, 0, CONFCHAIN_CODEC_OPUS, 40, 1, opus, sizeof opus, 10, rng, packet, sizeof packet,
                                  &plen, &sent),
     "opus encrypt");
  CHECK(sent.attempts == 1 && sent.clear_prefix == 0, "opus: one attempt, nothing in clear");
  ok(confchain_call_decrypt_frame(bob, 1, CONFCHAIN_CODEC_OPUS, packet, plen, 10, out, sizeof out, &flen, &info),
     "opus decrypt");
  CHECK(flen == sizeof opus && !memcmp(out, opus, flen) && info.has_level && info.level == 40 && info.speech == 1,
        "opus round trip with level 40 + speech");
  ok(confchain_media_encrypt_frame(enc, 0, CONFCHAIN_CODEC_OPUS, 127, 0, opus, sizeof opus, 11, packet, sizeof packet,
                                   &plen, NULL),
     "media opus encrypt");
  ok(confchain_media_decrypt_frame(dec, 1, CONFCHAIN_CODEC_OPUS, packet, plen, 11, out, sizeof out, &flen, &info),
     "media opus decrypt");
  CHECK(flen == sizeof opus && info.has_level && info.level == 127 && !info.speech, "media opus round trip");
  /* Only the level's low 7 bits are sent, as tgcalls does. */
  ok(confchain_call_encrypt_frame(alice, 0, CONFCHAIN_CODEC_OPUS, 200, 0, opus, sizeof opus, 12, rng, packet,
                                  sizeof packet, &plen, NULL),
     "level 200");
  ok(confchain_call_decrypt_frame(bob, 1, CONFCHAIN_CODEC_OPUS, packet, plen, 12, out, sizeof out, &flen, &info),
     "level 200 decrypt");
  CHECK(info.has_level && info.level == 200 - 128, "level 200 arrives as 72");
  int32_t rc = confchain_call_encrypt_frame(alice, 0, 9, 0, 0, opus, sizeof opus, 12, rng, packet, sizeof packet, &plen, NULL);
  CHECK(rc == 100 && confchain_last_error_kind() == CONFCHAIN_KIND_INVALID_INPUT, "codec 9 refused");

  /* VP8 key frame: 10 bytes in clear; delta frame: 1. */
  uint8_t vp8[2000];
  for (size_t i = 0; i < sizeof vp8; i++) vp8[i] = (uint8_t)(i * 13 + 5);
  vp8[0] = 0x10;
  ok(confchain_media_encrypt_frame(enc, 0, CONFCHAIN_CODEC_VP8, 0, 0, vp8, sizeof vp8, 20, packet, sizeof packet, &plen,
                                   &sent),
     "vp8 key");
  CHECK(sent.clear_prefix == 10 && !memcmp(packet, vp8, 10), "vp8 key frame: 10 bytes in clear");
  ok(confchain_media_decrypt_frame(dec, 1, CONFCHAIN_CODEC_VP8, packet, plen, 20, out, sizeof out, &flen, &info), "vp8");
  CHECK(flen == sizeof vp8 && !memcmp(out, vp8, flen) && !info.has_level, "vp8 round trip");
  vp8[0] = 0x11;
  ok(confchain_call_encrypt_frame(alice, 0, CONFCHAIN_CODEC_VP8, 0, 0, vp8, sizeof vp8, 21, rng, packet, sizeof packet,
                                  &plen, &sent),
     "vp8 delta");
  CHECK(sent.clear_prefix == 1, "vp8 delta frame: 1 byte in clear");

  /* H.264: the 3-byte start code before the slice is widened, the frame arrives widened. */
  static uint8_t h264[60000];
  const uint8_t head[] = {0, 0, 0, 1, 0x67, 0x42, 0xc0, 0x1e, 0xda, 0, 0, 1, 0x68, 0xce, 0x01, 0x0f, 0x20,
                          0, 0, 1, 0x65, 0x88, 0x84};
  memcpy(h264, head, sizeof head);
  for (size_t i = sizeof head; i < sizeof h264; i++) h264[i] = (uint8_t)((i * 131 + 7) % 251 + 1);
  int retried = 0, frames;
  for (frames = 0; frames < 3000; frames++) {
    ok(confchain_call_encrypt_frame(alice, 0, CONFCHAIN_CODEC_H264, 0, 0, h264, sizeof h264, 30, rng, packet,
                                    sizeof packet, &plen, &sent),
       "h264 encrypt");
    uint8_t valid = 0;
    ok(confchain_frame_is_valid_encrypted(CONFCHAIN_CODEC_H264, packet, plen, sent.clear_prefix, &valid), "validate");
    CHECK(valid && sent.attempts >= 1 && sent.attempts <= CONFCHAIN_FRAME_MAX_ATTEMPTS, "h264: valid packet");
    retried += sent.attempts > 1;
    ok(confchain_call_decrypt_frame(bob, 1, CONFCHAIN_CODEC_H264, packet, plen, 30, out, sizeof out, &flen, NULL),
       "h264 decrypt");
    CHECK(flen == sizeof h264 + 2 && out[9] == 0 && out[10] == 0 && out[11] == 0 && out[12] == 1, "h264 widened");
    if (retried) break;
  }
  CHECK(retried, "an H.264 retry within %d frames of 60 KB", frames + 1);

  /* Buffers: too small refused before a sequence number or the replay window is touched. */
  rc = confchain_media_encrypt_frame(enc, 0, CONFCHAIN_CODEC_VP8, 0, 0, vp8, sizeof vp8, 40, packet, 100, &plen, NULL);
  CHECK(rc == 100 && plen == confchain_frame_max_packet_size(sizeof vp8), "small encrypt buffer: size needed");
  ok(confchain_media_encrypt_frame(enc, 0, CONFCHAIN_CODEC_VP8, 0, 0, vp8, sizeof vp8, 40, packet, sizeof packet, &plen,
                                   NULL),
     "vp8");
  rc = confchain_media_decrypt_frame(dec, 1, CONFCHAIN_CODEC_VP8, packet, plen, 40, out, 10, &flen, NULL);
  CHECK(rc == 100 && confchain_last_error_kind() == CONFCHAIN_KIND_INVALID_INPUT, "small decrypt buffer refused");
  memset(out, 0xee, 16);
  rc = confchain_call_decrypt_frame(bob, 2, CONFCHAIN_CODEC_VP8, packet, plen, 40, out, sizeof out, &flen, NULL);
  CHECK(rc != 0 && out[0] == 0xee, "wrong sender refused, nothing written");
  ok(confchain_media_decrypt_frame(dec, 1, CONFCHAIN_CODEC_VP8, packet, plen, 40, out, sizeof out, &flen, NULL),
     "the retry decrypts (not a replay)");
  rc = confchain_media_decrypt_frame(dec, 1, CONFCHAIN_CODEC_VP8, packet, plen, 40, out, sizeof out, &flen, NULL);
  CHECK(rc == 100 && confchain_last_error_kind() == CONFCHAIN_KIND_REPLAY, "replay");

  /* FRAME__EMPTY: a packet with an empty plaintext is dropped with its kind. */
  confchain_bytes empty;
  ok(confchain_call_encrypt(alice, 0, NULL, 0, 0, 50, rng, &empty), "empty packet");
  rc = confchain_call_decrypt_frame(bob, 1, CONFCHAIN_CODEC_VP8, empty.data, empty.len, 50, out, sizeof out, &flen, NULL);
  CHECK(rc != 0 && confchain_last_error_kind() == CONFCHAIN_KIND_FRAME_EMPTY, "empty plaintext: FRAME_EMPTY (%d, %s)",
        confchain_last_error_kind(), confchain_error_name(confchain_last_error_kind()));
  CHECK(!strcmp(confchain_error_name(CONFCHAIN_KIND_FRAME_EMPTY), "FRAME__EMPTY"), "FRAME__EMPTY named");
  confchain_bytes_free(empty);

  /* FRAME__START_CODE: a call whose epoch hash starts with 01 follows `01 00 00 00` (the epoch
   * count) with `01`, so every H.264 attempt has a start code. Found among fresh calls. */
  int tries = 0, blackout = 0;
  for (; tries < 4000 && !blackout; tries++) {
    confchain_bytes z = zero_block(keys, members, 1, rng);
    confchain_call *solo;
    ok(confchain_call_create(1, keys[0], z.data, z.len, rng, &solo), "solo");
    rc = confchain_call_encrypt_frame(solo, 0, CONFCHAIN_CODEC_H264, 0, 0, head, sizeof head, 60, rng, packet,
                                      sizeof packet, &plen, &sent);
    if (rc != 0) {
      blackout = 1;
      CHECK(confchain_last_error_kind() == CONFCHAIN_KIND_FRAME_START_CODE, "blackout epoch: FRAME_START_CODE (%d)",
            confchain_last_error_kind());
      /* VP8 and audio still flow in that epoch. */
      ok(confchain_call_encrypt_frame(solo, 0, CONFCHAIN_CODEC_VP8, 0, 0, vp8, sizeof vp8, 60, rng, packet,
                                      sizeof packet, &plen, NULL),
         "vp8 in a blackout epoch");
    }
    confchain_call_free(solo);
    confchain_bytes_free(z);
  }
  CHECK(blackout, "an epoch with an H.264 blackout among %d calls", tries);
  CHECK(!strcmp(confchain_error_name(CONFCHAIN_KIND_FRAME_START_CODE), "FRAME__START_CODE"), "FRAME__START_CODE named");

  confchain_media_encryptor_free(enc);
  confchain_media_decryptor_free(dec);
  confchain_call_free(alice);
  confchain_call_free(bob);
  for (int i = 0; i < 2; i++) confchain_private_key_free(keys[i]);
  confchain_bytes_free(zero);
  confchain_rng_free(rng);
  printf("frames: %d vectors; H.264 retry after %d frames of 60 KB; blackout epoch after %d calls\n", nvec, frames + 1,
         tries);
  return report();
}
