/* A three-member conference through the C ABI, plus the reference's vectors.
 * Usage: conference VECTORS_FILE   (written by test.sh from vectors/tde2e/packets.json) */
#include "check.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The server hands blocks and broadcasts back with constructor id + 1. */
static confchain_bytes to_server(confchain_bytes b) {
  uint32_t magic;
  memcpy(&magic, b.data, 4);
  magic += 1;
  memcpy(b.data, &magic, 4);
  return b;
}

typedef struct {
  int64_t user_id;
  confchain_private_key *key;
  confchain_call *call;
} member;

static void relay_broadcasts(member *m, int n) {
  for (int round = 0; round < 4; round++) {
    for (int i = 0; i < n; i++) {
      if (!m[i].call) continue;
      for (;;) {
        uint8_t has = 0;
        confchain_bytes msg;
        ok(confchain_call_pull_outbound_message(m[i].call, &has, &msg), "pull outbound");
        if (!has) break;
        to_server(msg);
        for (int j = 0; j < n; j++) {
          if (m[j].call) ok(confchain_call_receive_inbound_message(m[j].call, msg.data, msg.len), "receive");
        }
        confchain_bytes_free(msg);
      }
    }
  }
}

static void conference(void) {
  uint8_t seed[32] = {1, 2, 3};
  confchain_rng *rng;
  ok(confchain_rng_new(seed, &rng), "rng");
  member m[3];
  for (int i = 0; i < 3; i++) {
    m[i].user_id = 100 + i;
    m[i].call = NULL;
    ok(confchain_private_key_generate(rng, &m[i].key), "key");
  }
  confchain_participant p0 = {.user_id = 100, .flags = 3, .version = 0};
  ok(confchain_private_key_public(m[0].key, &p0.public_key), "public key");
  confchain_bytes zero;
  ok(confchain_call_create_zero_block(m[0].key, &p0, 1, 3, rng, &zero), "zero block");
  to_server(zero);
  ok(confchain_call_create(100, m[0].key, zero.data, zero.len, rng, &m[0].call), "create call");

  confchain_bytes last = zero;
  confchain_bytes blocks[8];
  int nblocks = 0;
  blocks[nblocks++] = zero;
  for (int i = 1; i < 3; i++) {
    confchain_participant me = {.user_id = m[i].user_id, .flags = 3, .version = 0};
    ok(confchain_private_key_public(m[i].key, &me.public_key), "public key");
    confchain_bytes join;
    ok(confchain_call_create_self_add_block(m[i].key, last.data, last.len, &me, rng, &join), "self add");
    to_server(join);
    for (int j = 0; j < i; j++) ok(confchain_call_apply_block(m[j].call, join.data, join.len, 1000 * i, rng), "apply");
    ok(confchain_call_create(m[i].user_id, m[i].key, join.data, join.len, rng, &m[i].call), "create");
    last = join;
    blocks[nblocks++] = join;
  }
  size_t count = 0;
  ok(confchain_call_get_participant_count(m[2].call, &count), "count");
  CHECK(count == 3, "three participants, got %zu", count);
  int32_t height = -1;
  ok(confchain_call_get_height(m[0].call, &height), "height");
  CHECK(height == 2, "height 2, got %d", height);

  relay_broadcasts(m, 3);
  confchain_bytes e0, e1, e2;
  ok(confchain_call_get_emojis(m[0].call, &e0), "emojis");
  ok(confchain_call_get_emojis(m[1].call, &e1), "emojis");
  ok(confchain_call_get_emojis(m[2].call, &e2), "emojis");
  CHECK(e0.len > 0 && e0.len == e1.len && e1.len == e2.len && !memcmp(e0.data, e1.data, e0.len) &&
            !memcmp(e1.data, e2.data, e1.len),
        "all three see the same emojis");
  printf("emojis: %.*s\n", (int)e0.len, (const char *)e0.data);
  confchain_bytes_free(e0);
  confchain_bytes_free(e1);
  confchain_bytes_free(e2);
  confchain_verification_state vs;
  ok(confchain_call_get_verification_state(m[1].call, &vs), "verification state");
  CHECK(vs.has_emoji_hash == 1 && vs.height == 2, "verification done at height 2");

  /* Packets flow from every member to every other. */
  const char *frame = "HDR!opus frame";
  for (int s = 0; s < 3; s++) {
    confchain_bytes packet;
    ok(confchain_call_encrypt(m[s].call, 1, (const uint8_t *)frame, strlen(frame), 4, 5000, rng, &packet), "encrypt");
    CHECK(!memcmp(packet.data, "HDR!", 4), "clear prefix stays in clear");
    for (int r = 0; r < 3; r++) {
      if (r == s) continue;
      confchain_bytes plain;
      ok(confchain_call_decrypt(m[r].call, m[s].user_id, packet.data, packet.len, 5000, &plain), "decrypt");
      CHECK(plain.len == strlen(frame) && !memcmp(plain.data, frame, plain.len), "%d reads %d", r, s);
      confchain_bytes_free(plain);
    }
    /* A replay is refused as the reference does (UNKNOWN_ERROR, 100); the kind says REPLAY. */
    confchain_bytes again;
    int32_t code = confchain_call_decrypt(m[(s + 1) % 3].call, m[s].user_id, packet.data, packet.len, 5000, &again);
    char msg[256];
    confchain_last_error((uint8_t *)msg, sizeof msg);
    CHECK(code == CONFCHAIN_UNKNOWN_ERROR && confchain_last_error_kind() == CONFCHAIN_KIND_REPLAY &&
              strstr(msg, "already processed") && !strcmp(confchain_error_name(confchain_last_error_kind()), "REPLAY"),
          "replay refused: %d %s", code, msg);
    confchain_bytes_free(packet);
  }

  /* Encrypted messages (sendGroupCallEncryptedMessage). */
  const char *json = "{\"_\":\"groupCallMessage\"}";
  confchain_bytes sealed, opened;
  ok(confchain_call_encrypt_message(m[1].call, (const uint8_t *)json, strlen(json), 5000, rng, &sealed), "encrypt message");
  ok(confchain_call_decrypt_message(m[0].call, m[1].user_id, sealed.data, sealed.len, 5000, &opened), "decrypt message");
  CHECK(opened.len == strlen(json) && !memcmp(opened.data, json, opened.len), "message round trip");
  confchain_bytes_free(sealed);
  confchain_bytes_free(opened);

  /* Events: every member saw the blocks applied and the verification done. */
  int applied = 0, verified = 0;
  for (;;) {
    uint8_t has = 0;
    confchain_event ev;
    ok(confchain_call_poll_event(m[0].call, &has, &ev), "poll event");
    if (!has) break;
    applied += ev.kind == CONFCHAIN_EVENT_BLOCK_APPLIED;
    verified += ev.kind == CONFCHAIN_EVENT_VERIFICATION_DONE;
  }
  CHECK(applied == 2 && verified >= 1, "events: %d applied, %d verified", applied, verified);

  /* Member 100 removes 102; 102 can no longer encrypt. */
  confchain_participant keep[2];
  ok(confchain_call_get_participant(m[0].call, 0, &keep[0]), "participant");
  ok(confchain_call_get_participant(m[0].call, 1, &keep[1]), "participant");
  confchain_bytes removal;
  ok(confchain_call_create_change_state_block(m[0].call, keep, 2, 3, rng, &removal), "removal");
  to_server(removal);
  for (int i = 0; i < 3; i++) ok(confchain_call_apply_block(m[i].call, removal.data, removal.len, 6000, rng), "apply removal");
  confchain_bytes none;
  int32_t code = confchain_call_encrypt(m[2].call, 0, (const uint8_t *)"x", 1, 0, 6000, rng, &none);
  CHECK(code == 300, "removed member cannot encrypt: %d (%s)", code, confchain_error_name(code));
  uint8_t member_flag = 1, has_key = 1;
  ok(confchain_call_is_member(m[2].call, &member_flag, &has_key), "is member");
  CHECK(member_flag == 0 && has_key == 0, "removed: not a member, no key");
  /* Older epochs retire 10 s after the block that replaced them (the removal at 6000 is the last):
   * poll_timeout names the next instant; after 16000 nothing is left to retire. */
  uint8_t has_timeout = 0;
  uint64_t at = 0;
  ok(confchain_call_poll_timeout(m[0].call, &has_timeout, &at), "poll timeout");
  CHECK(has_timeout && at <= 16000, "a timeout by 16000, got %d %llu", has_timeout, (unsigned long long)at);
  ok(confchain_call_handle_timeout(m[0].call, 16000), "handle timeout");
  ok(confchain_call_poll_timeout(m[0].call, &has_timeout, &at), "poll timeout");
  CHECK(!has_timeout, "no more timeouts");

  /* Resync: member 101 adopts the last block again (a no-op) and keeps sending. */
  ok(confchain_call_resync(m[1].call, removal.data, removal.len, 16000, rng), "resync");

  /* An old block is refused with the reference's code, and the call is unchanged. */
  code = confchain_call_apply_block(m[0].call, blocks[1].data, blocks[1].len, 7000, rng);
  CHECK(code == 204 && !strcmp(confchain_error_name(code), "INVALID_BLOCK__HEIGHT_MISMATCH"), "old block: %d", code);
  ok(confchain_call_get_height(m[0].call, &height), "height");
  CHECK(height == 3, "height still 3, got %d", height);

  /* Hostile arguments: null handles and pointers are refused, never crash. */
  CHECK(confchain_call_get_height(NULL, &height) == CONFCHAIN_UNKNOWN_ERROR &&
            confchain_last_error_kind() == CONFCHAIN_KIND_INVALID_INPUT,
        "null call");
  CHECK(confchain_call_apply_block(m[0].call, NULL, 10, 0, rng) == CONFCHAIN_UNKNOWN_ERROR, "null block");
  CHECK(confchain_call_apply_block(m[0].call, (const uint8_t *)"\x01\x02", 2, 0, rng) == CONFCHAIN_UNKNOWN_ERROR &&
            confchain_last_error_kind() == CONFCHAIN_KIND_PARSE,
        "garbage block");

  confchain_bytes text;
  ok(confchain_call_describe(m[0].call, &text), "describe");
  printf("%.*s\n", (int)text.len, (const char *)text.data);
  confchain_bytes_free(text);
  ok(confchain_call_describe_block(removal.data, removal.len, &text), "describe block");
  printf("%.*s\n", (int)text.len, (const char *)text.data);
  confchain_bytes_free(text);

  confchain_bytes_free(removal);
  for (int i = 0; i < nblocks; i++) confchain_bytes_free(blocks[i]);
  for (int i = 0; i < 3; i++) {
    confchain_call_free(m[i].call);
    confchain_private_key_free(m[i].key);
  }
  confchain_rng_free(rng);
}

/* A one-to-one call (requestCall, acceptCall, confirmCall) with Telegram's prime. */
static void one_to_one(void) {
  uint8_t seed[32] = {3};
  confchain_rng *rng;
  ok(confchain_rng_new(seed, &rng), "rng");
  confchain_p2p_caller *caller;
  confchain_p2p_callee *callee;
  uint8_t g_a_hash[32];
  confchain_bytes g_a, g_b;
  ok(confchain_p2p_caller_new(3, NULL, 0, rng, &caller), "caller");
  ok(confchain_p2p_caller_g_a(caller, &g_a_hash, &g_a), "g_a");
  ok(confchain_p2p_callee_new(3, NULL, 0, g_a_hash, rng, &callee), "callee");
  ok(confchain_p2p_callee_g_b(callee, &g_b), "g_b");
  confchain_p2p_key *k1, *k2;
  ok(confchain_p2p_caller_on_accepted(caller, g_b.data, g_b.len, &k1), "accepted");
  int64_t fp1, fp2;
  confchain_bytes em1, em2, key1, key2;
  ok(confchain_p2p_key_get(k1, &fp1, &em1, &key1), "key");
  ok(confchain_p2p_callee_on_confirmed(callee, g_a.data, g_a.len, fp1, &k2), "confirmed");
  ok(confchain_p2p_key_get(k2, &fp2, &em2, &key2), "key");
  CHECK(fp1 == fp2 && key1.len == 256 && key2.len == 256 && !memcmp(key1.data, key2.data, 256) && em1.len == em2.len &&
            !memcmp(em1.data, em2.data, em1.len),
        "both sides agree on the key, fingerprint and emojis");
  confchain_p2p_key *bad;
  CHECK(confchain_p2p_callee_on_confirmed(callee, g_a.data, g_a.len, fp1 ^ 1, &bad) == CONFCHAIN_UNKNOWN_ERROR &&
            confchain_last_error_kind() == CONFCHAIN_KIND_DH_CHECK,
        "a wrong fingerprint is refused");
  confchain_bytes_free(g_a);
  confchain_bytes_free(g_b);
  confchain_bytes_free(em1);
  confchain_bytes_free(em2);
  confchain_bytes_free(key1);
  confchain_bytes_free(key2);
  confchain_p2p_key_free(k1);
  confchain_p2p_key_free(k2);
  confchain_p2p_caller_free(caller);
  confchain_p2p_callee_free(callee);
  confchain_rng_free(rng);
}

static size_t unhex(const char *s, uint8_t *out, size_t cap) {
  size_t n = strlen(s) / 2;
  if (n > cap) n = cap;
  for (size_t i = 0; i < n; i++) {
    unsigned v;
    sscanf(s + 2 * i, "%2x", &v);
    out[i] = (uint8_t)v;
  }
  return n;
}

/* Vectors: "key UID HEX", "block HEX" (all members that appear in it create or apply it),
 * "decrypt RECEIVER SENDER PACKET PLAINTEXT", "invalid CODE PREFIX_BLOCK BLOCK". */
static void vectors(const char *path) {
  FILE *f = fopen(path, "r");
  if (!f) {
    fprintf(stderr, "cannot open %s\n", path);
    exit(1);
  }
  static char line[1 << 20];
  static uint8_t a[1 << 18], b[1 << 18];
  uint8_t seed[32] = {9};
  confchain_rng *rng;
  ok(confchain_rng_new(seed, &rng), "rng");
  member m[8];
  int n = 0;
  while (fgets(line, sizeof line, f)) {
    line[strcspn(line, "\n")] = 0;
    char *tok = strtok(line, " ");
    if (!tok) continue;
    if (!strcmp(tok, "key")) {
      m[n].user_id = atoll(strtok(NULL, " "));
      size_t len = unhex(strtok(NULL, " "), a, sizeof a);
      ok(confchain_private_key_from_bytes(a, len, &m[n].key), "key");
      m[n].call = NULL;
      n++;
    } else if (!strcmp(tok, "block")) {
      size_t len = unhex(strtok(NULL, " "), a, sizeof a);
      for (int i = 0; i < n; i++) {
        if (m[i].call) {
          ok(confchain_call_apply_block(m[i].call, a, len, 0, rng), "apply vector block");
        } else if (confchain_call_create(m[i].user_id, m[i].key, a, len, rng, &m[i].call) != 0) {
          m[i].call = NULL; /* not a participant of this block yet */
        }
      }
    } else if (!strcmp(tok, "decrypt")) {
      int64_t receiver = atoll(strtok(NULL, " "));
      int64_t sender = atoll(strtok(NULL, " "));
      size_t plen = unhex(strtok(NULL, " "), a, sizeof a);
      char *want = strtok(NULL, " ");
      size_t wlen = want ? unhex(want, b, sizeof b) : 0;
      for (int i = 0; i < n; i++) {
        if (m[i].user_id != receiver) continue;
        confchain_bytes plain;
        int32_t code = confchain_call_decrypt(m[i].call, sender, a, plen, 0, &plain);
        CHECK(code == 0 && plain.len == wlen && (wlen == 0 || !memcmp(plain.data, b, wlen)), "vector packet for %lld: %d",
              (long long)receiver, code);
        if (code == 0) confchain_bytes_free(plain);
      }
    } else if (!strcmp(tok, "invalid")) {
      int32_t want = atoi(strtok(NULL, " "));
      size_t len = unhex(strtok(NULL, " "), a, sizeof a);
      size_t blen = unhex(strtok(NULL, " "), b, sizeof b);
      /* Any member of the prefix block checks the candidate. */
      for (int i = 0; i < n; i++) {
        confchain_call *call;
        if (confchain_call_create(m[i].user_id, m[i].key, a, len, rng, &call) != 0) continue;
        int32_t code = confchain_call_apply_block(call, b, blen, 0, rng);
        CHECK(code == want, "invalid block: want %d (%s), got %d", want, confchain_error_name(want), code);
        confchain_call_free(call);
        break;
      }
    }
  }
  fclose(f);
  for (int i = 0; i < n; i++) {
    confchain_call_free(m[i].call);
    confchain_private_key_free(m[i].key);
  }
  confchain_rng_free(rng);
}

int main(int argc, char **argv) {
  printf("confchain %s\n", confchain_version());
  conference();
  one_to_one();
  if (argc > 1) vectors(argv[1]);
  return report();
}
