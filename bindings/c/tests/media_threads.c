/* Media handles from several threads at once (C ABI): 4 threads decrypt the frames of 7 senders
 * through one shared decryptor while the main thread applies re-key blocks to the receiver's
 * call. Each frame is offered to two threads: it is accepted at most once, every refusal is a
 * replay (a frame older than the first one accepted from its sender is "too old", the
 * reference's window rule, so a few may be refused by both), and nearly all are accepted. */
#include "check.h"

#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { MEMBERS = 8, ROUNDS = 200, THREADS = 4 };

typedef struct {
  int64_t sender;
  uint64_t now;
  uint8_t data[2200];
  size_t len;
} frame;

static frame frames[(MEMBERS - 1) * ROUNDS];
static size_t nframes = 0;
static confchain_media_decryptor *decryptor;
static int accepted[THREADS], replays[THREADS], other[THREADS];
static int times_accepted[(MEMBERS - 1) * ROUNDS];

static void *worker(void *arg) {
  int t = (int)(intptr_t)arg;
  uint8_t out[2200];
  /* Threads 0,1 take the even frames, 2,3 the odd ones: each frame goes to two threads. */
  for (size_t i = (size_t)(t / 2); i < nframes; i += 2) {
    size_t len = 0;
    int32_t rc = confchain_media_decrypt(decryptor, frames[i].sender, frames[i].data, frames[i].len, frames[i].now, out,
                                         sizeof out, &len);
    if (rc == 0) {
      accepted[t]++;
      __sync_fetch_and_add(&times_accepted[i], 1);
    }
    else if (confchain_last_error_kind() == CONFCHAIN_KIND_REPLAY)
      replays[t]++;
    else
      other[t]++;
  }
  return NULL;
}

int main(void) {
  uint8_t seed[32] = {7};
  confchain_rng *rng;
  ok(confchain_rng_new(seed, &rng), "rng");
  confchain_private_key *keys[MEMBERS];
  confchain_participant members[MEMBERS];
  for (int i = 0; i < MEMBERS; i++) {
    ok(confchain_private_key_generate(rng, &keys[i]), "key");
    members[i].user_id = i + 1;
    members[i].flags = 3;
    members[i].version = 0;
    ok(confchain_private_key_public(keys[i], &members[i].public_key), "public");
  }
  confchain_bytes zero;
  ok(confchain_call_create_zero_block(keys[0], members, MEMBERS, 0, rng, &zero), "zero block");
  uint32_t magic;
  memcpy(&magic, zero.data, 4), magic++, memcpy(zero.data, &magic, 4);
  confchain_call *calls[MEMBERS];
  confchain_media_encryptor *enc[MEMBERS];
  for (int i = 0; i < MEMBERS; i++) {
    ok(confchain_call_create(i + 1, keys[i], zero.data, zero.len, rng, &calls[i]), "call");
    ok(confchain_call_media_encryptor(calls[i], rng, &enc[i]), "encryptor");
  }
  ok(confchain_call_media_decryptor(calls[0], &decryptor), "decryptor");
  /* Senders 2..8 encrypt frames over 2 s of virtual time. */
  for (int r = 0; r < ROUNDS; r++) {
    for (int s = 1; s < MEMBERS; s++) {
      frame *f = &frames[nframes++];
      uint8_t payload[1000];
      memset(payload, r, sizeof payload);
      f->sender = s + 1;
      f->now = (uint64_t)r * 10;
      if (confchain_media_max_packet_size(sizeof payload) > sizeof f->data) return 1;
      ok(confchain_media_encrypt(enc[s], 0, payload, sizeof payload, 2, f->now, f->data, sizeof f->data, &f->len),
         "encrypt");
    }
  }
  pthread_t threads[THREADS];
  for (int t = 0; t < THREADS; t++) pthread_create(&threads[t], NULL, worker, (void *)(intptr_t)t);
  /* Meanwhile the signalling thread re-keys the receiver's call 10 times. */
  for (int k = 0; k < 10; k++) {
    confchain_bytes block;
    ok(confchain_call_create_change_state_block(calls[1], members, MEMBERS, 0, rng, &block), "re-key");
    memcpy(&magic, block.data, 4), magic++, memcpy(block.data, &magic, 4);
    ok(confchain_call_apply_block(calls[0], block.data, block.len, 100, rng), "apply on receiver");
    ok(confchain_call_apply_block(calls[1], block.data, block.len, 100, rng), "apply on re-keyer");
    ok(confchain_call_apply_block(calls[MEMBERS - 1], block.data, block.len, 100, rng), "apply on the last");
    confchain_bytes_free(block);
  }
  int total_ok = 0, total_replay = 0, total_other = 0;
  for (int t = 0; t < THREADS; t++) {
    pthread_join(threads[t], NULL);
    total_ok += accepted[t], total_replay += replays[t], total_other += other[t];
  }
  int twice = 0;
  for (size_t i = 0; i < nframes; i++) twice += times_accepted[i] > 1;
  CHECK(!twice && !total_other && total_ok + total_replay == 2 * (int)nframes && total_ok >= (int)nframes * 95 / 100,
        "%d accepted (%d twice), %d replays, %d other, of %zu frames", total_ok, twice, total_replay, total_other, nframes);
  /* A removed member's encryptor stops at once. */
  confchain_bytes removal;
  ok(confchain_call_create_change_state_block(calls[1], members, MEMBERS - 1, 0, rng, &removal), "removal");
  memcpy(&magic, removal.data, 4), magic++, memcpy(removal.data, &magic, 4);
  ok(confchain_call_apply_block(calls[MEMBERS - 1], removal.data, removal.len, 200, rng), "apply removal");
  uint8_t out[2000];
  size_t len;
  int32_t rc = confchain_media_encrypt(enc[MEMBERS - 1], 0, (const uint8_t *)"x", 1, 0, 200, out, sizeof out, &len);
  CHECK(rc == 300, "removed member still encrypts (%d)", rc);
  confchain_bytes_free(removal);
  confchain_bytes_free(zero);
  for (int i = 0; i < MEMBERS; i++) {
    confchain_media_encryptor_free(enc[i]);
    confchain_call_free(calls[i]);
    confchain_private_key_free(keys[i]);
  }
  confchain_media_decryptor_free(decryptor);
  confchain_rng_free(rng);
  printf("media threads: %zu frames, %d accepted (none twice), %d replays refused\n", nframes, total_ok, total_replay);
  return report();
}
