/* Two sessions through the server model, over the C ABI: create, join, verification, a packet, a
 * message, a removal and a rejoin. Usage: session (no arguments). */
#include "check.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { N = 3 };
static confchain_session *sessions[N];
static const int64_t users[N] = {1, 2, 3};
static confchain_server *server;
static confchain_rng *rng;

static int index_of(int64_t user) {
  for (int i = 0; i < N; i++)
    if (users[i] == user) return i;
  return -1;
}

/* Runs every pending request through the server until nothing is left. */
static void pump(uint64_t now) {
  for (int busy = 1; busy;) {
    busy = 0;
    for (int i = 0; i < N; i++) {
      for (;;) {
        uint8_t has = 0;
        confchain_request req;
        ok(confchain_session_poll_request(sessions[i], &has, &req), "poll request");
        if (!has) break;
        busy = 1;
        confchain_updates *response, *pushes;
        confchain_bytes error;
        /* A null output is refused before the server acts: the request is handled once, below. */
        CHECK(confchain_server_handle(server, users[i], &req, &response, &error, NULL) != 0, "null pushes accepted");
        ok(confchain_server_handle(server, users[i], &req, &response, &error, &pushes), "server");
        ok(confchain_session_handle_response(sessions[i], req.id, response, error.data, error.len, now, rng), "response");
        size_t n = 0;
        int64_t to = 0;
        ok(confchain_updates_get(pushes, 0, &n, &to), "pushes");
        for (size_t k = 0; k < n; k++) {
          ok(confchain_updates_get(pushes, k, &n, &to), "push");
          int j = index_of(to);
          if (j >= 0) ok(confchain_session_handle_updates(sessions[j], pushes, (int64_t)k, now, rng), "deliver");
        }
        confchain_updates_free(response);
        confchain_updates_free(pushes);
        confchain_bytes_free(error);
        confchain_request_free(&req);
      }
    }
  }
}

static int state_of(int i, int32_t *height) {
  int32_t state;
  ok(confchain_session_get_state(sessions[i], &state, height), "state");
  return state;
}

int main(void) {
  uint8_t seed[32] = {42};
  ok(confchain_rng_new(seed, &rng), "rng");
  ok(confchain_server_new(0, &server), "server");
  for (int i = 0; i < N; i++) ok(confchain_session_new(users[i], &sessions[i]), "session");
  /* The last member's session is configured by name (SessionConfig's fields); bad fields refuse. */
  const confchain_config_value config[] = {{"call_size_limit", 1000}, {"max_requests_per_second", 20}};
  confchain_session_free(sessions[N - 1]);
  ok(confchain_session_new_with_config(users[N - 1], config, 2, &sessions[N - 1]), "configured session");
  const confchain_config_value bad[][1] = {{{"call_size_limit", 1}}, {{"no_such_field", 1}}, {{"prune_left", 2}},
                                           {{NULL, 1}}};
  for (int i = 0; i < 4; i++) {
    confchain_session *refused = NULL;
    CHECK(confchain_session_new_with_config(9, bad[i], 1, &refused) != 0 && refused == NULL &&
              confchain_last_error_kind() == CONFCHAIN_KIND_INVALID_INPUT,
          "bad configuration %d refused", i);
  }

  ok(confchain_session_create(sessions[0], 1, 0, rng), "create");
  pump(0);
  ok(confchain_session_join(sessions[1], 0, rng), "join");
  ok(confchain_session_join(sessions[2], 0, rng), "join");
  pump(0);
  int32_t h[N];
  for (int i = 0; i < N; i++) CHECK(state_of(i, &h[i]) == 2, "session %d joined", i);
  CHECK(h[0] == 2 && h[1] == 2 && h[2] == 2, "all at height 2: %d %d %d", h[0], h[1], h[2]);

  confchain_bytes e0, e2;
  ok(confchain_session_get_emojis(sessions[0], &e0), "emojis");
  ok(confchain_session_get_emojis(sessions[2], &e2), "emojis");
  CHECK(e0.len > 0 && e0.len == e2.len && !memcmp(e0.data, e2.data, e0.len), "same emojis");
  printf("emojis: %.*s\n", (int)e0.len, (const char *)e0.data);
  confchain_bytes_free(e0);
  confchain_bytes_free(e2);

  /* Events of member 3: joined, participants [1, 2, 3], verification done. */
  int joined = 0, done = 0, members = 0;
  for (;;) {
    uint8_t has = 0;
    confchain_session_event ev;
    ok(confchain_session_poll_event(sessions[2], &has, &ev), "event");
    if (!has) break;
    joined += ev.kind == CONFCHAIN_SESSION_JOINED;
    done += ev.kind == CONFCHAIN_SESSION_VERIFICATION_DONE;
    if (ev.kind == CONFCHAIN_SESSION_PARTICIPANTS_CHANGED) members = (int)ev.user_ids_len;
    confchain_session_event_free(&ev);
  }
  CHECK(joined == 1 && done >= 1 && members == 3, "events: joined %d, done %d, members %d", joined, done, members);

  /* A media frame and a message. */
  confchain_bytes packet, plain;
  CHECK(confchain_session_encrypt(sessions[0], 0, (const uint8_t *)"frame", 5, 0, 10, rng, NULL) != 0, "null slot");
  ok(confchain_session_encrypt(sessions[0], 0, (const uint8_t *)"frame", 5, 0, 10, rng, &packet), "encrypt");
  /* A null output is refused before the packet is marked as seen: the retry is no replay. */
  CHECK(confchain_session_decrypt(sessions[1], 1, packet.data, packet.len, 10, NULL) != 0, "null frame slot");
  ok(confchain_session_decrypt(sessions[1], 1, packet.data, packet.len, 10, &plain), "decrypt");
  CHECK(plain.len == 5 && !memcmp(plain.data, "frame", 5), "frame decrypted");
  confchain_bytes_free(packet);
  confchain_bytes_free(plain);
  /* A media frame through the frame layer: Opus with its level. */
  uint8_t frame_packet[2048], frame_out[2048];
  size_t frame_len = 0;
  confchain_received_frame info = {0, 0, 0};
  ok(confchain_session_encrypt_frame(sessions[0], CONFCHAIN_CHANNEL_MAIN, CONFCHAIN_CODEC_OPUS, 9, 1,
                                     (const uint8_t *)"opus", 4, 10, rng, frame_packet, sizeof frame_packet, &frame_len,
                                     NULL),
     "encrypt frame");
  ok(confchain_session_decrypt_frame(sessions[1], 1, CONFCHAIN_CODEC_OPUS, frame_packet, frame_len, 10, frame_out,
                                     sizeof frame_out, &frame_len, &info),
     "decrypt frame");
  CHECK(frame_len == 4 && !memcmp(frame_out, "opus", 4) && info.has_level && info.level == 9 && info.speech,
        "frame decrypted with its level");
  /* Who sent it: member 2 decrypts by SSRC through its session's map. The server model gives
   * member 1's participation the lowest SSRC, 1000, which member 2 has not seen yet: the frame is
   * a typed drop and the session looks the SSRC up. */
  confchain_source_table *map;
  confchain_source who = {0, 0};
  uint8_t found = 1;
  ok(confchain_session_source_map(sessions[1], &map), "source map");
  ok(confchain_source_table_get(map, 1000, &who, &found), "get");
  CHECK(!found, "SSRC 1000 not mapped yet");
  ok(confchain_session_encrypt_frame(sessions[0], CONFCHAIN_CHANNEL_MAIN, CONFCHAIN_CODEC_OPUS, 7, 0,
                                     (const uint8_t *)"held", 4, 11, rng, frame_packet, sizeof frame_packet, &frame_len,
                                     NULL),
     "encrypt frame");
  size_t held_len = frame_len, out_len = 0;
  CHECK(confchain_session_decrypt_frame_from_source(sessions[1], map, 1000, CONFCHAIN_CODEC_OPUS, frame_packet,
                                                    held_len, 11, frame_out, sizeof frame_out, &out_len, &info,
                                                    &who) != 0 &&
            confchain_last_error_kind() == CONFCHAIN_KIND_FRAME_UNKNOWN_SOURCE,
        "an unknown SSRC is FRAME__UNKNOWN_SOURCE");
  ok(confchain_session_handle_timeout(sessions[1], 12, rng), "timeout");
  pump(12); /* the lookup (CONFCHAIN_REQUEST_GET_GROUP_PARTICIPANTS) and its answer */
  ok(confchain_source_table_get(map, 1000, &who, &found), "get");
  CHECK(found && who.user_id == 1 && who.kind == CONFCHAIN_MEDIA_KIND_AUDIO, "SSRC 1000 is member 1's audio");
  ok(confchain_session_decrypt_frame_from_source(sessions[1], map, 1000, CONFCHAIN_CODEC_OPUS, frame_packet, held_len,
                                                 12, frame_out, sizeof frame_out, &out_len, &info, &who),
     "decrypt frame by SSRC");
  CHECK(out_len == 4 && !memcmp(frame_out, "held", 4) && info.level == 7 && who.user_id == 1,
        "the held frame decrypts for member 1");
  /* The session applies its own updates: a view refuses records; participant records given to the
   * session fill its map (member 1's camera). */
  const uint32_t camera[3] = {2000, 2001, 2002};
  confchain_participant_record record = {1, 0, 0, 0, 1000, camera, 3, 0, NULL, 0, 0};
  CHECK(confchain_source_table_apply(map, &record, 1, NULL) != 0, "a view refuses records");
  confchain_updates *update;
  ok(confchain_updates_new(&update), "updates");
  ok(confchain_updates_add_participants(update, &record, 1), "participants");
  ok(confchain_session_handle_updates(sessions[1], update, -1, 13, rng), "participants update");
  confchain_updates_free(update);
  ok(confchain_source_table_get(map, 2002, &who, &found), "get");
  CHECK(found && who.user_id == 1 && who.kind == CONFCHAIN_MEDIA_KIND_VIDEO, "SSRC 2002 is member 1's camera");
  /* A standalone table, read through a view, on a call's media decryptor. */
  confchain_source_table *table, *view;
  size_t changes = 0, n_misses = 0;
  uint32_t misses[CONFCHAIN_MAX_REPORTED_MISSES];
  ok(confchain_source_table_new(&table), "table");
  ok(confchain_source_table_view(table, &view), "view");
  ok(confchain_source_table_apply(table, &record, 1, &changes), "apply");
  CHECK(changes == 4, "4 SSRCs mapped: %zu", changes);
  ok(confchain_session_encrypt_frame(sessions[0], CONFCHAIN_CHANNEL_MAIN, CONFCHAIN_CODEC_OPUS, 7, 0,
                                     (const uint8_t *)"next", 4, 14, rng, frame_packet, sizeof frame_packet, &frame_len,
                                     NULL),
     "encrypt frame");
  CHECK(confchain_session_decrypt_frame_from_source(sessions[1], view, 4242, CONFCHAIN_CODEC_OPUS, frame_packet,
                                                    frame_len, 14, frame_out, sizeof frame_out, &out_len, &info,
                                                    NULL) != 0,
        "SSRC 4242 is nobody's");
  ok(confchain_source_table_take_misses(table, misses, CONFCHAIN_MAX_REPORTED_MISSES, &n_misses), "misses");
  CHECK(n_misses == 1 && misses[0] == 4242, "4242 missed");
  ok(confchain_session_decrypt_frame_from_source(sessions[1], view, 2000, CONFCHAIN_CODEC_OPUS, frame_packet,
                                                 frame_len, 14, frame_out, sizeof frame_out, &out_len, &info, &who),
     "decrypt by a standalone table");
  CHECK(out_len == 4 && !memcmp(frame_out, "next", 4) && who.kind == CONFCHAIN_MEDIA_KIND_VIDEO, "by the camera SSRC");
  confchain_source_table_free(view);
  confchain_source_table_free(table);
  /* A table of capacity 1 keeps the participant updated last. */
  ok(confchain_source_table_with_capacity(1, &table), "table of one");
  confchain_participant_record other = {.user_id = 2, .source = 3003};
  ok(confchain_source_table_apply(table, &record, 1, &changes), "apply one");
  ok(confchain_source_table_apply(table, &other, 1, &changes), "apply another");
  ok(confchain_source_table_get(table, 2000, &who, &found), "get the first");
  CHECK(!found, "the first participant forgotten");
  ok(confchain_source_table_get(table, 3003, &who, &found), "get the last");
  CHECK(found && who.user_id == 2 && who.kind == CONFCHAIN_MEDIA_KIND_AUDIO, "the last participant kept");
  confchain_source_table_free(table);
  const char *json = "{\"_\":\"groupCallMessage\",\"random_id\":\"5\"}";
  ok(confchain_session_send_message(sessions[1], (const uint8_t *)json, strlen(json), 10, rng), "message");
  pump(10);
  int got = 0;
  for (;;) {
    uint8_t has = 0;
    confchain_session_event ev;
    ok(confchain_session_poll_event(sessions[0], &has, &ev), "event");
    if (!has) break;
    if (ev.kind == CONFCHAIN_SESSION_MESSAGE_RECEIVED && ev.from_id == 2 && ev.text.len == strlen(json)) got++;
    confchain_session_event_free(&ev);
  }
  CHECK(got == 1, "message received once: %d", got);

  /* Member 1 bans member 3; member 3 learns it at its next poll and rejoins with a new key. */
  int64_t victim = 3;
  ok(confchain_session_remove(sessions[0], &victim, 1, 1, 20, rng), "remove");
  pump(20);
  for (uint64_t now = 20; now <= 30000; now += 1000) {
    for (int i = 0; i < N; i++) ok(confchain_session_handle_timeout(sessions[i], now, rng), "timeout");
    pump(now);
  }
  CHECK(state_of(2, &h[2]) == 4, "member 3 removed");
  ok(confchain_session_join(sessions[2], 30000, rng), "rejoin");
  pump(30000);
  for (int i = 0; i < N; i++) state_of(i, &h[i]);
  CHECK(state_of(2, &h[2]) == 2 && h[0] == 4 && h[1] == 4 && h[2] == 4, "rejoined at height 4: %d %d %d", h[0], h[1],
        h[2]);

  /* The view stays live while the session runs (the session empties it when it leaves a call). */
  size_t mapped = 0;
  ok(confchain_source_table_len(map, &mapped), "len");
  CHECK(mapped > 0, "member 2's map is live after the rejoin: %zu", mapped);
  confchain_source_table_free(map);
  for (int i = 0; i < N; i++) confchain_session_free(sessions[i]);
  confchain_server_free(server);
  confchain_rng_free(rng);
  return report();
}
