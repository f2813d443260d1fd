/* SPDX-License-Identifier: MIT */
/*
 * pproto_metrics.c: the one table that names and describes every STATS key
 * as Prometheus sees it: its metric name (or label), its type and its HELP
 * text. pproto_render_prometheus() reads it; docs/stats.md lists the same
 * names. A key added to STATS gets its line here, and test_daemon_cmds fails
 * until it has one. A key without a line still renders and lints clean, with
 * a generic HELP (pproto_render.c).
 *
 * Prometheus names may differ from the STATS keys (counters of a row get
 * `_total`, `_unix` times become `_timestamp_seconds`); the STATS keys
 * themselves are never renamed. Pure data and a lookup: no I/O.
 */
#include <string.h>

#include "pproto.h"

#define G PPROTO_METRIC_GAUGE
#define C PPROTO_METRIC_COUNTER
#define L PPROTO_METRIC_LABEL
#define I PPROTO_METRIC_INFO
#define H PPROTO_METRIC_HISTOGRAM

const char *const pproto_life_keys[PPROTO_LIFE_BUCKETS] = {
    "lt_1us", "lt_10us", "lt_100us", "lt_1ms", "lt_10ms", "lt_100ms", "lt_1s", "lt_10s", "more"};
const char *const pproto_life_le[PPROTO_LIFE_BUCKETS] = {
    "1e-06", "1e-05", "0.0001", "0.001", "0.01", "0.1", "1", "10", "+Inf"};

#define LIFE_HELP                                                                                  \
    "Sampled block lifetimes by class (one allocation in 4096 or so), from malloc to free by "     \
    "the same thread, in seconds"

static const pproto_metric_t metrics[] = {
    /* # server */
    {"server", "version", I, "version", "poold's version"},
    {"server", "abi", G, "poold_abi", "Version of the shared-memory segment layout (ABI)"},
    {"server", "pid", G, "poold_pid", "Process id of poold"},
    {"server", "uptime_seconds", G, "poold_uptime_seconds", "Seconds since this poold started"},
    {"server", "daemon_gen", G, "poold_daemon_gen",
     "How many poolds have created or adopted this segment"},
    {"server", "shm_name", I, "shm_name", "POSIX shared-memory name of the segment"},
    {"server", "socket", I, "socket", "Path of the control socket"},
    {"server", "connections", G, "poold_connections", "Control-socket connections open now"},

    /* # pool */
    {"pool", "segment_bytes", G, "poold_segment_bytes", "Size of the shared-memory segment"},
    {"pool", "span_bytes", G, "poold_span_bytes",
     "Size of a span, the unit of memory a size class carves into blocks"},
    {"pool", "spans_max", G, "poold_spans_max", "Spans the segment can hold"},
    {"pool", "spans_carved", G, "poold_spans_carved",
     "Spans in use now by a size class or a large block"},
    {"pool", "bytes_carved", G, "poold_bytes_carved", "Bytes of spans carved into blocks"},
    {"pool", "bytes_in_use", G, "poold_bytes_in_use",
     "Bytes of blocks allocated and not yet freed (blocks in use times block size)"},
    {"pool", "bytes_committed", G, "poold_bytes_committed",
     "Bytes of the segment's spans whose memory is in /dev/shm now (committed)"},
    {"pool", "bytes_retained", G, "poold_bytes_retained",
     "Bytes of free spans whose memory is still committed (the purge gives back those beyond "
     "retain after purge_delay)"},
    {"pool", "bytes_purged_total", C, "poold_bytes_purged_total",
     "Bytes of free spans whose memory poold gave back to the system (purged)"},
    {"pool", "spans_free", G, "poold_spans_free",
     "Spans in no use now, never claimed or given back: free memory for any class or large block"},
    {"pool", "large_blocks_in_use", G, "poold_large_blocks_in_use",
     "Large blocks (above the largest class, runs of whole spans) allocated and not yet freed"},
    {"pool", "large_bytes_in_use", G, "poold_large_bytes_in_use",
     "Bytes of the spans of the large blocks in use"},
    {"pool", "large_bytes_asked", G, "poold_large_bytes_asked",
     "Bytes asked for by the large blocks in use (the rest of their spans is waste)"},
    {"pool", "large_blocks_in_transit", G, "poold_large_blocks_in_transit",
     "Large blocks handed off and not yet adopted or freed"},
    {"pool", "large_allocations_total", C, "poold_large_allocations_total",
     "Large blocks allocated"},
    {"pool", "large_frees_total", C, "poold_large_frees_total", "Large blocks freed"},
    {"pool", "large_reclaimed_total", C, "poold_large_reclaimed_total",
     "Large blocks dead processes had in use, given back"},
    {"pool", "large_exhausted_total", C, "poold_large_exhausted_total",
     "Large requests refused: no run of free spans long enough"},
    {"pool", "spans_swept_total", C, "poold_spans_swept_total",
     "Empty spans of a size class that poold gave back to the free spans"},
    {"pool", "procs_attached", G, "poold_procs_attached", "Processes attached to the pool now"},
    {"pool", "procs_max", G, "poold_procs_max", "Process slots in the segment"},
    {"pool", "procs_reclaimed_total", C, "poold_procs_reclaimed_total",
     "Processes that died attached without detaching or exiting normally (crashes), reclaimed"},
    {"pool", "procs_exited_total", C, "poold_procs_exited_total",
     "Processes that detached, exited normally or were replaced by exec"},
    {"pool", "blocks_reclaimed_total", C, "poold_blocks_reclaimed_total",
     "Cached blocks given back to the pool from processes that died"},
    {"pool", "blocks_orphaned_total", C, "poold_blocks_orphaned_total",
     "Blocks dead processes had in use, kept in transit for a receiver (orphans = keep)"},
    {"pool", "blocks_reclaimed_in_use_total", C, "poold_blocks_reclaimed_in_use_total",
     "Blocks dead processes had in use, given back to the pool"},
    {"pool", "blocks_in_transit", G, "poold_blocks_in_transit",
     "Blocks in transit: handed off or kept from a dead or detached process, not adopted yet"},
    {"pool", "invalid_frees_total", C, "poold_invalid_frees_total",
     "Frees refused because the block was not in use (double frees)"},
    {"pool", "allocations_total", C, "poold_allocations_total", "Allocations, all classes"},
    {"pool", "frees_total", C, "poold_frees_total", "Frees, all classes"},
    {"pool", "reuses_total", C, "poold_reuses_total",
     "Allocations served by a block freed before rather than a freshly carved one"},
    {"pool", "same_address_total", C, "poold_same_address_total",
     "Allocations that returned exactly the block the same thread freed last"},
    {"pool", "cache_misses_total", C, "poold_cache_misses_total",
     "Allocations that found the thread cache empty and refilled from the central list"},
    {"pool", "central_misses_total", C, "poold_central_misses_total",
     "Refills that found the central list empty and carved a new span"},
    {"pool", "exhausted_total", C, "poold_exhausted_total",
     "Allocations refused with ENOMEM because no span was left"},
    {"pool", "uncached_ops_total", C, "poold_uncached_ops_total",
     "Allocations and frees by threads beyond the thread-cache limit (no cache)"},
    {"pool", "entries_dropped_total", C, "poold_entries_dropped_total",
     "Invalid entries dropped while reclaiming (a sign of a corrupt segment)"},
    {"pool", "corrupt", G, "poold_corrupt",
     "1 when poold found the segment corrupt (it then refuses new attaches)"},
    {"pool", "corruptions_total", C, "poold_corruptions_total",
     "Corruption checks that found the segment corrupt"},
    {"pool", "integrity_checks_total", C, "poold_integrity_checks_total",
     "Corruption checks run over the segment (at adoption and sampled)"},

    /* # classes: one row per size class, labelled by its block size */
    {"classes", "size", L, "size", "Block size of the class in bytes"},
    {"classes", "spans", G, "poold_class_spans", "Spans carved for the class"},
    {"classes", "carved", G, "poold_class_carved", "Blocks carved for the class"},
    {"classes", "free", G, "poold_class_free",
     "Free blocks of the class, on the central list and in thread caches"},
    {"classes", "central", G, "poold_class_central", "Free blocks on the class's central list"},
    {"classes", "cached", G, "poold_class_cached", "Free blocks in thread caches"},
    {"classes", "in_use", G, "poold_class_in_use", "Blocks allocated and not yet freed"},
    {"classes", "allocs", C, "poold_class_allocs_total", "Allocations from the class"},
    {"classes", "frees", C, "poold_class_frees_total", "Frees to the class"},
    {"classes", "reuses", C, "poold_class_reuses_total",
     "Allocations served by a block freed before rather than a freshly carved one"},
    {"classes", "same_address", C, "poold_class_same_address_total",
     "Allocations that returned exactly the block the same thread freed last"},
    {"classes", "cache_misses", C, "poold_class_cache_misses_total",
     "Allocations that found the thread cache empty and refilled from the central list"},
    {"classes", "central_misses", C, "poold_class_central_misses_total",
     "Refills that found the central list empty and carved a new span"},
    {"classes", "exhausted", C, "poold_class_exhausted_total",
     "Allocations refused with ENOMEM because no span was left"},
    {"classes", "in_transit", G, "poold_class_in_transit",
     "Blocks of the class in transit: handed off or kept, not adopted yet"},
    {"classes", "invalid_frees", C, "poold_class_invalid_frees_total",
     "Frees to the class refused because the block was not in use (double frees)"},
    {"classes", "reclaimed_in_use", C, "poold_class_reclaimed_in_use_total",
     "Blocks of the class dead processes had in use, given back to the pool"},
    {"classes", "peak", G, "poold_class_peak",
     "High-water mark of the blocks of the class processes held, since poold started"},
    {"classes", "peak_bytes", G, "poold_class_peak_bytes",
     "High-water mark of the bytes of the class processes held, since poold started"},

    /* # processes: one row per attached process */
    {"processes", "pid", L, "pid", "Process id"},
    {"processes", "name", L, "name", "Name the process gave at HELLO"},
    {"processes", "slot", G, "poold_proc_slot", "Process slot the process holds in the segment"},
    {"processes", "attached_unix", G, "poold_proc_attached_timestamp_seconds",
     "When the process attached, in seconds since the Unix epoch"},
    {"processes", "uptime_seconds", G, "poold_proc_uptime_seconds",
     "Seconds since the process attached"},
    {"processes", "allocs", C, "poold_proc_allocs_total", "Allocations by the process"},
    {"processes", "frees", C, "poold_proc_frees_total", "Frees by the process"},
    {"processes", "cache_misses", C, "poold_proc_cache_misses_total",
     "Allocations by the process that found its thread cache empty"},
    {"processes", "cached", G, "poold_proc_cached", "Free blocks in the process's thread caches"},
    {"processes", "in_use", G, "poold_proc_in_use",
     "Blocks the process allocated less those it freed (negative when it frees others' blocks)"},
    {"processes", "threads", G, "poold_proc_threads", "Threads of the process with a cache"},
    {"processes", "connected", G, "poold_proc_connected",
     "1 while the process holds a control connection, 0 while poold watches it by pidfd"},
    {"processes", "in_use_bytes", G, "poold_proc_in_use_bytes",
     "Bytes of the blocks the process holds now, all classes (owner bytes)"},
    {"processes", "peak_bytes", G, "poold_proc_peak_bytes",
     "High-water mark of the bytes the process held since it attached"},
    {"processes", "growth_1m_bytes", G, "poold_proc_growth_1m_bytes",
     "In-use bytes of the process now less a minute ago (since it attached when younger)"},

    /* # lifetimes: one histogram per class */
    {"lifetimes", "size", L, "size", "Block size of the class in bytes"},
    {"lifetimes", "lt_1us", H, "poold_block_lifetime_seconds", LIFE_HELP},
    {"lifetimes", "lt_10us", H, "poold_block_lifetime_seconds", LIFE_HELP},
    {"lifetimes", "lt_100us", H, "poold_block_lifetime_seconds", LIFE_HELP},
    {"lifetimes", "lt_1ms", H, "poold_block_lifetime_seconds", LIFE_HELP},
    {"lifetimes", "lt_10ms", H, "poold_block_lifetime_seconds", LIFE_HELP},
    {"lifetimes", "lt_100ms", H, "poold_block_lifetime_seconds", LIFE_HELP},
    {"lifetimes", "lt_1s", H, "poold_block_lifetime_seconds", LIFE_HELP},
    {"lifetimes", "lt_10s", H, "poold_block_lifetime_seconds", LIFE_HELP},
    {"lifetimes", "more", H, "poold_block_lifetime_seconds", LIFE_HELP},
    {"lifetimes", "sum_ns", H, "poold_block_lifetime_seconds", LIFE_HELP},

    /* # orphans: the last processes reclaimed after a crash */
    {"orphans", "pid", L, "pid", "Process id of the process that died"},
    {"orphans", "slot", G, "poold_orphan_slot", "Process slot the dead process held"},
    {"orphans", "blocks", G, "poold_orphan_blocks",
     "Blocks the dead process had in use when it died, given back or kept"},
    {"orphans", "kept", G, "poold_orphan_kept",
     "Of the blocks the dead process had in use, those kept in transit (orphans = keep)"},
    {"orphans", "reclaimed_blocks", C, "poold_orphan_reclaimed_blocks_total",
     "Cached blocks of the dead process given back to the pool"},
    {"orphans", "reclaimed_unix", G, "poold_orphan_reclaimed_timestamp_seconds",
     "When the dead process was reclaimed, in seconds since the Unix epoch"},

    /* # holdings: per attached process and class, what it holds */
    {"holdings", "pid", L, "pid", "Process id"},
    {"holdings", "name", L, "name", "Name the process gave at HELLO"},
    {"holdings", "size", L, "size", "Block size of the class in bytes"},
    {"holdings", "blocks", G, "poold_proc_class_in_use",
     "Blocks of the class the process holds now (owner bytes)"},
    {"holdings", "bytes", G, "poold_proc_class_in_use_bytes",
     "Bytes of the blocks of the class the process holds now"},
    {"holdings", "peak", G, "poold_proc_class_peak",
     "High-water mark of the blocks of the class the process held since it attached"},

    /* # warnings: what poold warns about now */
    {"warnings", "kind", L, "kind",
     "What is wrong: pool_full, pool_carved, class_exhausted, leak_suspect, double_free, slots"},
    {"warnings", "subject", L, "subject",
     "What it is about: pool, class_SIZE, pid_PID, procs, threads"},
    {"warnings", "active", G, "poold_warning", "1 while poold raises this warning"},
    {"warnings", "value", G, "poold_warning_value",
     "The figure behind the warning: percent full, allocations refused, bytes grown, slots taken"},
    {"warnings", "since_unix", G, "poold_warning_since_timestamp_seconds",
     "When the warning was raised, in seconds since the Unix epoch"},

    /* # channels: the channels in use */
    {"channels", "name", L, "channel", "Name of the channel"},
    {"channels", "kind", L, "kind", "Kind of the channel: queue or topic"},
    {"channels", "capacity", G, "poold_channel_capacity", "Messages the channel can hold"},
    {"channels", "depth", G, "poold_channel_depth",
     "Messages in the channel now: sent and not yet received"},
    {"channels", "taking", G, "poold_channel_taking",
     "Of those, messages a receiver is taking at this moment"},
    {"channels", "bytes_held", G, "poold_channel_bytes_held",
     "Bytes of the blocks of the messages in the channel"},
    {"channels", "members", G, "poold_channel_members",
     "Opens of the channel not yet closed, by live processes"},
    {"channels", "sent", C, "poold_channel_sent_total", "Messages put in the channel"},
    {"channels", "received", C, "poold_channel_received_total",
     "Messages taken from the channel by a receiver"},
    {"channels", "sent_per_s", G, "poold_channel_sent_per_second",
     "Messages sent per second over poold's last second"},
    {"channels", "received_per_s", G, "poold_channel_received_per_second",
     "Messages received per second over poold's last second"},
    {"channels", "full_waits", C, "poold_channel_full_waits_total",
     "Sends that found the channel full (and waited, or returned EAGAIN)"},
    {"channels", "given_back", C, "poold_channel_given_back_total",
     "Messages a receiver was taking when it died, given back to the pool"},
    {"channels", "handed_on", C, "poold_channel_handed_on_total",
     "Messages a sender died before handing off, handed off by its reclaim"},
    {"channels", "refused", C, "poold_channel_refused_total",
     "Messages skipped because their block was not the channel's when taken"},
    {"channels", "subscribers", G, "poold_channel_subscribers",
     "Topic subscribers now (0 for a queue)"},
    {"channels", "slow_subscribers", G, "poold_channel_slow_subscribers",
     "Topic subscribers a whole capacity behind: senders wait for them"},
    {"channels", "lag_max", G, "poold_channel_lag_max",
     "Most messages a topic subscriber has not yet released"},
    {"channels", "unheard", C, "poold_channel_unheard_total",
     "Topic messages sent while nobody subscribed, freed at once"},
    {"channels", "freed", C, "poold_channel_freed_total",
     "Topic messages freed after their last subscriber released them"},
    {"channels", "receivers_waiting", G, "poold_channel_receivers_waiting",
     "Receivers asleep on the channel now"},
    {"channels", "senders_waiting", G, "poold_channel_senders_waiting",
     "Senders asleep on the channel now, waiting for room"},
    {"channels", "created_unix", G, "poold_channel_created_timestamp_seconds",
     "When the channel was made, in seconds since the Unix epoch"},
};

static const pproto_metric_t info = {
    NULL, NULL, G, "poold_info",
    "poold's string settings as labels (version, shm_name, socket); the value is always 1"};

/* The sections of rows: the prefix of their metrics' names. */
static const struct {
    const char *section, *prefix;
} row_sections[] = {
    {"classes", "poold_class_"},    {"processes", "poold_proc_"},
    {"orphans", "poold_orphan_"},   {"holdings", "poold_proc_class_"},
    {"warnings", "poold_warning"},  {"lifetimes", "poold_block_lifetime_"},
    {"channels", "poold_channel_"},
};

static bool eq(const char *z, const char *s, size_t n)
{
    return strlen(z) == n && memcmp(z, s, n) == 0;
}

const pproto_metric_t *pproto_metric_find(const char *section, const char *key, size_t key_len)
{
    for (size_t i = 0; i < sizeof(metrics) / sizeof(metrics[0]); i++)
        if (strcmp(metrics[i].section, section) == 0 && eq(metrics[i].key, key, key_len))
            return &metrics[i];
    return NULL;
}

const pproto_metric_t *pproto_metric_at(size_t i)
{
    return i < sizeof(metrics) / sizeof(metrics[0]) ? &metrics[i] : NULL;
}

const pproto_metric_t *pproto_metric_info(void)
{
    return &info;
}

const char *pproto_metric_row_prefix(const char *section)
{
    for (size_t i = 0; i < sizeof(row_sections) / sizeof(row_sections[0]); i++)
        if (strcmp(row_sections[i].section, section) == 0)
            return row_sections[i].prefix;
    return NULL;
}
