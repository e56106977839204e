/* Outputs and sizes at the C boundary: every function that writes into the caller's memory checks
 * what it can deliver (buffer capacity, null output pointers) before it consumes anything (a
 * sequence number, a replay-window slot, a queued message or event), so that the retry succeeds;
 * and a count or length no caller can hold is an error, never an abort or a huge allocation.
 * Usage: buffers (no arguments). */
#include "check.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static confchain_rng *rng;

static int32_t kind(void) { return confchain_last_error_kind(); }

/* Server form of a plain-form block (constructor id + 1). */
static void to_server(confchain_bytes *b) {
  uint32_t magic;
  memcpy(&magic, b->data, 4), magic++, memcpy(b->data, &magic, 4);
}

static void media(confchain_call *alice, confchain_call *bob) {
  confchain_media_encryptor *enc;
  confchain_media_decryptor *dec;
  ok(confchain_call_media_encryptor(alice, rng, &enc), "encryptor");
  ok(confchain_call_media_decryptor(bob, &dec), "decryptor");
  uint8_t frame[100], packet[2000], out[2000];
  memset(frame, 0xab, sizeof frame);
  size_t len = 0, plen = 0;

  /* encrypt: a short buffer is refused with the size needed, before a sequence number is drawn. */
  int32_t rc = confchain_media_encrypt(enc, 0, frame, sizeof frame, 2, 5, packet, 10, &len);
  CHECK(rc != 0 && kind() == CONFCHAIN_KIND_INVALID_INPUT, "short packet buffer accepted (%d)", rc);
  CHECK(len == confchain_media_max_packet_size(sizeof frame), "size needed %zu", len);
  rc = confchain_media_encrypt(enc, 0, frame, sizeof frame, 2, 5, packet, sizeof packet, NULL);
  CHECK(rc != 0 && kind() == CONFCHAIN_KIND_INVALID_INPUT, "null out_len accepted (%d)", rc);
  rc = confchain_media_encrypt(enc, 0, frame, sizeof frame, 2, 5, NULL, sizeof packet, &len);
  CHECK(rc != 0 && kind() == CONFCHAIN_KIND_INVALID_INPUT, "null buffer accepted (%d)", rc);
  ok(confchain_media_encrypt(enc, 0, frame, sizeof frame, 2, 5, packet, len, &plen), "encrypt with the size asked");
  CHECK(plen > sizeof frame && plen <= len, "packet of %zu bytes", plen);

  /* decrypt: a short buffer, a null out_len or a null buffer are refused before the packet is
   * marked as seen: the retry is not a replay, and the frame is not lost. */
  rc = confchain_media_decrypt(dec, 1, packet, plen, 5, out, 10, &len);
  CHECK(rc != 0 && kind() == CONFCHAIN_KIND_INVALID_INPUT, "short frame buffer accepted (%d)", rc);
  CHECK(len == confchain_media_max_frame_size(plen) && len >= sizeof frame, "size needed %zu", len);
  size_t needed = len;
  rc = confchain_media_decrypt(dec, 1, packet, plen, 5, out, sizeof out, NULL);
  CHECK(rc != 0 && kind() == CONFCHAIN_KIND_INVALID_INPUT, "null out_len accepted (%d)", rc);
  rc = confchain_media_decrypt(dec, 1, packet, plen, 5, NULL, sizeof out, &len);
  CHECK(rc != 0 && kind() == CONFCHAIN_KIND_INVALID_INPUT, "null buffer accepted (%d)", rc);
  len = 0;
  rc = confchain_media_decrypt(dec, 1, packet, plen, 5, out, needed, &len);
  CHECK(rc == 0 && len == sizeof frame && !memcmp(out, frame, sizeof frame), "retry lost the frame (%d, %zu)", rc, len);
  /* The packet was consumed exactly once: now it is a replay. */
  rc = confchain_media_decrypt(dec, 1, packet, plen, 5, out, sizeof out, &len);
  CHECK(rc != 0 && kind() == CONFCHAIN_KIND_REPLAY, "second delivery not a replay (%d, kind %d)", rc, kind());

  /* A forged huge length never reaches the decryptor. */
  rc = confchain_media_decrypt(dec, 1, packet, SIZE_MAX, 5, out, sizeof out, &len);
  CHECK(rc != 0 && kind() == CONFCHAIN_KIND_INVALID_INPUT, "huge packet length accepted (%d)", rc);
  confchain_media_encryptor_free(enc);
  confchain_media_decryptor_free(dec);
}

static void call_outputs(confchain_call *alice, confchain_call *bob) {
  /* Outbound broadcasts and events stay queued when the output pointer is null. */
  uint8_t has = 0;
  confchain_bytes msg;
  CHECK(confchain_call_pull_outbound_message(alice, &has, NULL) != 0, "null outbound slot accepted");
  ok(confchain_call_pull_outbound_message(alice, &has, &msg), "pull outbound");
  CHECK(has == 1 && msg.len > 0, "the queued commit was lost (%d)", has);
  confchain_bytes_free(msg);
  confchain_event ev;
  CHECK(confchain_call_poll_event(bob, &has, NULL) != 0, "null event slot accepted");
  ok(confchain_call_poll_event(bob, &has, &ev), "poll event");

  /* Packets: a null output is refused before encrypting or decrypting; the retry succeeds. */
  confchain_bytes packet, plain;
  CHECK(confchain_call_encrypt(alice, 0, (const uint8_t *)"frame", 5, 0, 5, rng, NULL) != 0, "null packet slot");
  ok(confchain_call_encrypt(alice, 0, (const uint8_t *)"frame", 5, 0, 5, rng, &packet), "encrypt");
  CHECK(confchain_call_decrypt(bob, 1, packet.data, packet.len, 5, NULL) != 0, "null frame slot accepted");
  int32_t rc = confchain_call_decrypt(bob, 1, packet.data, packet.len, 5, &plain);
  CHECK(rc == 0 && plain.len == 5 && !memcmp(plain.data, "frame", 5), "retry of call_decrypt failed (%d)", rc);
  if (rc == 0) confchain_bytes_free(plain);
  confchain_bytes_free(packet);

  /* Encrypted messages likewise. */
  const char *json = "{\"_\":\"groupCallMessage\"}";
  confchain_bytes m, text;
  CHECK(confchain_call_encrypt_message(alice, (const uint8_t *)json, strlen(json), 5, rng, NULL) != 0, "null slot");
  ok(confchain_call_encrypt_message(alice, (const uint8_t *)json, strlen(json), 5, rng, &m), "encrypt message");
  CHECK(confchain_call_decrypt_message(bob, 1, m.data, m.len, 5, NULL) != 0, "null message slot accepted");
  rc = confchain_call_decrypt_message(bob, 1, m.data, m.len, 5, &text);
  CHECK(rc == 0 && text.len == strlen(json), "retry of decrypt_message failed (%d)", rc);
  if (rc == 0) confchain_bytes_free(text);
  confchain_bytes_free(m);

  /* Handles: a null output is refused before the RNG is drawn from. */
  CHECK(confchain_private_key_generate(rng, NULL) != 0, "null key slot accepted");
  CHECK(confchain_call_media_encryptor(alice, rng, NULL) != 0, "null encryptor slot accepted");
  uint8_t hash[32] = {0};
  CHECK(confchain_p2p_callee_new(3, NULL, 0, hash, rng, NULL) != 0, "null callee slot accepted");
  CHECK(confchain_p2p_caller_new(3, NULL, 0, rng, NULL) != 0, "null caller slot accepted");
  confchain_participant me;
  ok(confchain_call_get_participant(alice, 0, &me), "participant");
  CHECK(confchain_call_create_change_state_block(alice, &me, 1, 0, rng, NULL) != 0, "null block slot accepted");
  CHECK(confchain_call_describe(alice, NULL) != 0, "null text slot accepted");
  CHECK(confchain_call_is_member(alice, &has, NULL) != 0, "null has_key slot accepted");
}

static void sizes(confchain_call *alice, const confchain_participant *members) {
  /* Counts and lengths no caller can hold: errors, not aborts. */
  confchain_updates *updates;
  ok(confchain_updates_new(&updates), "updates");
  const uint8_t *blocks[1] = {(const uint8_t *)"x"};
  size_t lens[1] = {1};
  int32_t rc = confchain_updates_add_chain_blocks(updates, 0, blocks, lens, SIZE_MAX, 1);
  CHECK(rc != 0 && kind() == CONFCHAIN_KIND_INVALID_INPUT, "count SIZE_MAX accepted (%d)", rc);
  rc = confchain_updates_add_chain_blocks(updates, 0, blocks, lens, (size_t)1 << 40, 1);
  CHECK(rc != 0 && kind() == CONFCHAIN_KIND_INVALID_INPUT, "count 2^40 accepted (%d)", rc);
  rc = confchain_updates_add_chain_blocks(updates, 0, blocks, lens, CONFCHAIN_MAX_LIST_LEN + 1, 1);
  CHECK(rc != 0 && kind() == CONFCHAIN_KIND_INVALID_INPUT, "count past the limit accepted (%d)", rc);
  size_t huge[1] = {SIZE_MAX};
  rc = confchain_updates_add_chain_blocks(updates, 0, blocks, huge, 1, 1);
  CHECK(rc != 0 && kind() == CONFCHAIN_KIND_INVALID_INPUT, "block of SIZE_MAX bytes accepted (%d)", rc);
  size_t n = 99;
  int64_t to;
  ok(confchain_updates_get(updates, 0, &n, &to), "updates get");
  CHECK(n == 0, "a refused add changed the list (%zu)", n);
  ok(confchain_updates_add_chain_blocks(updates, 0, blocks, lens, 1, 1), "a sane add");
  ok(confchain_updates_get(updates, 0, &n, &to), "updates get");
  CHECK(n == 1, "list of %zu", n);
  confchain_updates_free(updates);

  confchain_bytes block;
  rc = confchain_call_create_change_state_block(alice, members, SIZE_MAX, 0, rng, &block);
  CHECK(rc != 0 && kind() == CONFCHAIN_KIND_INVALID_INPUT, "participants SIZE_MAX accepted (%d)", rc);
  rc = confchain_call_apply_block(alice, (const uint8_t *)"x", SIZE_MAX, 5, rng);
  CHECK(rc != 0 && kind() == CONFCHAIN_KIND_INVALID_INPUT, "block length SIZE_MAX accepted (%d)", rc);
  confchain_session *s;
  ok(confchain_session_new(1, &s), "session");
  int64_t id = 2;
  rc = confchain_session_remove(s, &id, SIZE_MAX, 0, 5, rng);
  CHECK(rc != 0 && kind() == CONFCHAIN_KIND_INVALID_INPUT, "user_ids SIZE_MAX accepted (%d)", rc);
  rc = confchain_session_handle_response(s, 1, NULL, (const uint8_t *)"TIMEOUT", SIZE_MAX, 5, rng);
  CHECK(rc != 0 && kind() == CONFCHAIN_KIND_INVALID_INPUT, "error string of SIZE_MAX bytes accepted (%d)", rc);
  ok(confchain_session_handle_response(s, 1, NULL, (const uint8_t *)"TIMEOUT", 7, 5, rng), "a sane error string");
  confchain_session_free(s);

  /* The last error is copied truncated, with its full length returned. */
  char small[8];
  size_t full = confchain_last_error((uint8_t *)small, sizeof small);
  CHECK(full > sizeof small && strlen(small) == sizeof small - 1, "last error %zu, copied %zu", full, strlen(small));
}

int main(void) {
  uint8_t seed[32] = {11};
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
  confchain_bytes zero;
  ok(confchain_call_create_zero_block(keys[0], members, 2, 0, rng, &zero), "zero block");
  to_server(&zero);
  confchain_call *calls[2];
  CHECK(confchain_call_create(1, keys[0], zero.data, zero.len, rng, NULL) != 0, "null call slot accepted");
  for (int i = 0; i < 2; i++) ok(confchain_call_create(i + 1, keys[i], zero.data, zero.len, rng, &calls[i]), "call");

  media(calls[0], calls[1]);
  call_outputs(calls[0], calls[1]);
  sizes(calls[0], members);

  /* Issue 23 item 2: media handles outlive their call but refuse once it is gone (CALL_CLOSED). */
  confchain_media_encryptor *enc;
  confchain_media_decryptor *dec;
  ok(confchain_call_media_encryptor(calls[0], rng, &enc), "encryptor before the call is freed");
  ok(confchain_call_media_decryptor(calls[1], &dec), "decryptor before the call is freed");
  uint8_t frame[16] = {1}, packet[4096], plain[4096];
  size_t plen = 0, flen = 0;
  ok(confchain_media_encrypt(enc, 0, frame, sizeof frame, 0, 5, packet, sizeof packet, &plen), "encrypt while open");

  confchain_bytes_free(zero);
  for (int i = 0; i < 2; i++) {
    confchain_call_free(calls[i]);
    confchain_private_key_free(keys[i]);
  }
  uint8_t again[4096];
  size_t alen = 0;
  CHECK(confchain_media_encrypt(enc, 0, frame, sizeof frame, 0, 5, again, sizeof again, &alen) != 0 &&
            kind() == CONFCHAIN_KIND_CALL_CLOSED && !strcmp(confchain_error_name(kind()), "CALL_CLOSED"),
        "an encryptor of a freed call refuses (kind %d)", kind());
  CHECK(confchain_media_decrypt(dec, 1, packet, plen, 5, plain, sizeof plain, &flen) != 0 &&
            kind() == CONFCHAIN_KIND_CALL_CLOSED,
        "a decryptor of a freed call refuses (kind %d)", kind());
  confchain_media_encryptor_free(enc);
  confchain_media_decryptor_free(dec);
  confchain_rng_free(rng);
  printf("buffers: ");
  return report();
}
