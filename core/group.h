/*
 * The classic consumer-group coordinator (JoinGroup/SyncGroup/Heartbeat/
 * LeaveGroup), with each group's committed offsets.
 *
 * States, as Kafka names them:
 *   Empty               no members (offsets may remain)
 *   PreparingRebalance  JoinGroup responses are held until every member
 *                       rejoined or the rebalance timeout passed; an
 *                       Empty group first waits
 *                       group.initial.rebalance.delay.ms for more members
 *   CompletingRebalance a new generation exists; followers' SyncGroup is
 *                       held until the leader's brings the assignment
 *   Stable              assignment delivered
 *   Dead                only reported for unknown groups (we free groups
 *                       instead of keeping them Dead)
 *
 * Everything runs on the loop thread. Held responses are sk_resp slots
 * left pending with a cancel function, so a client that goes away in the
 * middle of a rebalance frees its slot at once. Timers are libev timers:
 * one per group (join deadline, initial delay, SyncGroup deadline), one
 * per member (session) and one per KIP-394 pending member. A heartbeat
 * only stamps the member; the session timer re-arms itself for the time
 * left when it fires, so heartbeats cost no timer operations.
 *
 * Cost: every request is O(1) in the number of members (hash maps by
 * member id and group.instance.id, counters of members awaiting join and
 * of members supporting each protocol); completing a rebalance is O(n),
 * answering each member once. Nothing is O(n^2) per event.
 *
 * Group ids are limited to SK_GROUP_ID_MAX bytes (Kafka has no limit;
 * ours keeps sqlite keys and log lines sane): longer or empty ids get
 * INVALID_GROUP_ID from every group API, as FindCoordinator already does
 * for empty ones.
 *
 * Group membership is not persisted: after a restart members rejoin (their
 * old member ids get UNKNOWN_MEMBER_ID, which every client handles by
 * joining afresh) and the group restarts at generation 1. Committed
 * offsets are durable (core/offsets.h); a group reloaded with offsets and
 * not yet rejoined counts as a standalone group for retention.
 */
#ifndef SK_GROUP_H
#define SK_GROUP_H

#include <ev.h>

#include "hmap.h"
#include "kafka_errors.h"
#include "list.h"
#include "offsets.h"
#include "proto.h"

#define SK_GROUP_ID_MAX 255

struct sk_broker;
struct sk_req;
struct sk_resp;

enum sk_group_state {
	SK_GROUP_EMPTY,
	SK_GROUP_PREPARING,  /* PreparingRebalance */
	SK_GROUP_COMPLETING, /* CompletingRebalance */
	SK_GROUP_STABLE,
	SK_GROUP_DEAD,
};

/* Kafka's name of a state ("PreparingRebalance"). */
const char *sk_group_state_name(enum sk_group_state s);

/* One protocol a member supports, in its order of preference. */
struct sk_group_proto {
	char *name;
	uint8_t *meta;
	int32_t len;
};

struct sk_group;

/* A member of a group's current or coming generation. */
struct sk_member {
	struct sk_hnode node;  /* in group->members, by id */
	struct sk_hnode inode; /* in group->statics, by instance id */
	struct sk_list link;   /* in group->member_list, oldest first */
	struct sk_group *g;
	char *id;
	char *instance_id; /* group.instance.id; NULL for dynamic */
	char *client_id;
	char *client_host; /* "/1.2.3.4", as Kafka reports it */
	int32_t session_ms;
	int32_t rebalance_ms;
	struct sk_group_proto *protos;
	int32_t n_protos;
	uint8_t *assignment; /* from the leader's SyncGroup */
	int32_t assignment_len;
	ev_timer session;
	int64_t last_seen;	   /* monotonic ms of the last sign of life */
	bool is_new;		   /* joined in this rebalance */
	bool pending_sync;	   /* owes a SyncGroup for this generation */
	struct sk_resp *join_resp; /* held JoinGroup, if any */
	struct sk_resp *sync_resp; /* held SyncGroup, if any */
	int16_t join_version, sync_version;
};

struct sk_groups;

struct sk_group {
	struct sk_hnode node; /* in groups->map */
	struct sk_groups *gs;
	char *id;
	size_t id_len;
	enum sk_group_state state;
	int64_t state_ms; /* wall clock of the last state change */
	int32_t generation;
	char *protocol_type; /* NULL: never had members (standalone) */
	char *protocol;	     /* of this generation; NULL while Empty */
	struct sk_member *leader;
	struct sk_list member_list;
	struct sk_hmap members;	   /* struct sk_member by id */
	struct sk_hmap statics;	   /* struct sk_member by instance id */
	struct sk_hmap pending;	   /* KIP-394 pending member ids */
	struct sk_hmap protos;	   /* protocol name -> supporting members */
	struct sk_hmap subscribed; /* topics of a "consumer" generation */
	bool subscribed_known;
	int32_t n_members;
	int32_t n_awaiting_join; /* members with a held JoinGroup */
	int32_t n_pending_sync;
	uint64_t proto_stamp;	 /* counting passes over protocols */
	ev_timer timer;		 /* join, initial delay or sync deadline */
	bool initial_delay;	 /* the timer is the initial delay */
	bool new_member_added;	 /* during the initial delay */
	int64_t initial_left_ms; /* rebalance time left after the delay */
	struct sk_hmap offsets;	 /* struct sk_offset by topic+partition */
};

/* The coordinator: every group of this broker. */
struct sk_groups {
	struct sk_broker *b;
	struct ev_loop *loop;
	struct sk_hmap map; /* struct sk_group by id */
	struct sk_offsets *store;
	ev_timer retention; /* offsets.retention.check.interval.ms */
	bool stopping;
};

/* Load committed offsets from DIR/offsets.db and start the writer. */
int sk_groups_open(struct sk_groups **out, struct sk_broker *b,
		   struct sk_err *err);
/*
 * Shutdown begins: answer every held JoinGroup and SyncGroup with
 * NOT_COORDINATOR (clients look for the coordinator again and rejoin
 * once it is back), and hold no new ones.
 */
void sk_groups_stop(struct sk_groups *gs);
/* Write what is queued, then free everything. Safe with NULL. */
void sk_groups_free(struct sk_groups *gs);

struct sk_group *sk_groups_find(const struct sk_groups *gs, const char *id,
				size_t len);
/* NONE, or INVALID_GROUP_ID for an empty or too long id. */
enum sk_kerr sk_group_id_check(struct sk_str id);
/* The member of g with this id, or NULL. */
struct sk_member *sk_group_member(const struct sk_group *g, const char *id,
				  size_t len);
/* The member's metadata for protocol name, or NULL. */
const struct sk_group_proto *sk_member_proto(const struct sk_member *m,
					     const char *name);

/* A decoded JoinGroup; the strings point into the request. */
struct sk_join_args {
	struct sk_str group_id;
	struct sk_str member_id;
	struct sk_str instance_id; /* p == NULL: none */
	struct sk_str protocol_type;
	int32_t session_ms;
	int32_t rebalance_ms;
	int32_t n_protos;
	struct sk_group_proto *protos; /* taken over by sk_group_join */
};

/* Answer req now, or hold it until the rebalance completes. */
void sk_group_join(struct sk_groups *gs, struct sk_req *req,
		   struct sk_join_args *a);

/* A decoded SyncGroup; the strings point into the request. */
struct sk_sync_args {
	struct sk_str group_id;
	struct sk_str member_id;
	struct sk_str instance_id;
	int32_t generation;
	int32_t n_assign;
	struct sk_str *assign_member; /* n_assign each, owned by caller */
	struct sk_str *assign_bytes;
};

/* Answer req now, or hold it until the leader's assignment arrives. */
void sk_group_sync(struct sk_groups *gs, struct sk_req *req,
		   const struct sk_sync_args *a);

enum sk_kerr sk_group_heartbeat(struct sk_groups *gs, struct sk_str group_id,
				struct sk_str member_id,
				struct sk_str instance_id, int32_t generation);

/*
 * One member of a LeaveGroup (the group was found): by member id, or by
 * instance id alone (member id "": administrative removal).
 */
enum sk_kerr sk_group_leave(struct sk_group *g, struct sk_str member_id,
			    struct sk_str instance_id);

/*
 * OffsetCommit's group checks (Kafka's classic rules): a standalone
 * commit (generation < 0, no member) needs an Empty group, created if
 * missing; otherwise the member and generation must match and the group
 * must not be CompletingRebalance. On NONE *out is the group and the
 * member's session counts as alive.
 */
enum sk_kerr sk_group_commit_check(struct sk_groups *gs, struct sk_str id,
				   int32_t generation, struct sk_str member_id,
				   struct sk_str instance_id,
				   struct sk_group **out);

/* The committed offset of (topic, partition), or NULL. */
struct sk_offset *sk_group_offset(const struct sk_group *g, const char *topic,
				  size_t tlen, int32_t partition);

/*
 * Delete a group (DeleteGroups): GROUP_ID_NOT_FOUND, NON_EMPTY_GROUP, or
 * NONE after which the group is gone and the deletion of its offsets is
 * queued (sk_offsets_wait tells when it is durable).
 */
enum sk_kerr sk_group_delete(struct sk_groups *gs, struct sk_str id);

/* Is the group's current generation subscribed to topic (OffsetDelete)? */
bool sk_group_subscribed(const struct sk_group *g, const char *topic,
			 size_t tlen);

/*
 * The internal view of committed offsets and lag, for metrics and admin:
 * fn runs once per committed offset. log_end is the partition's end
 * offset (-1 if the topic or partition no longer exists) and lag is
 * max(0, log_end - committed), or -1 when log_end is unknown.
 */
struct sk_offset_lag {
	const char *group;
	const char *topic;
	int32_t partition;
	int64_t committed;
	int64_t log_end;
	int64_t lag;
	const char *state; /* the group's state name */
};
typedef void (*sk_offset_lag_fn)(void *arg, const struct sk_offset_lag *v);
void sk_groups_lag_foreach(struct sk_groups *gs, sk_offset_lag_fn fn,
			   void *arg);

/*
 * Send the answers that group changes queued (a handler that called
 * sk_group_leave calls this after finishing its own response).
 */
void sk_groups_flush(struct sk_groups *gs);

/*
 * Finish resp once every offset record queued so far is durable. If the
 * write failed, the int16 error codes at byte positions pos[0..n) of the
 * response buffer are replaced by fail first.
 */
void sk_groups_answer_durable(struct sk_groups *gs, struct sk_resp *resp,
			      const size_t *pos, size_t n, int16_t fail);

/* Remove expired offsets now (the retention timer's work; tests). */
void sk_groups_expire_offsets(struct sk_groups *gs);

#endif
