/*
 * Skald release and plugin ABI versions.
 *
 * The release version (SKALD_VERSION) says what the broker does; the ABI
 * version (SKALD_ABI_MAJOR.SKALD_ABI_MINOR) says what a plugin built
 * against these headers may expect from the broker that loads it.
 *
 * ABI rule (Varnish's, stated once here and in CHANGELOG.md):
 *  - An addition bumps SKALD_ABI_MINOR: a member appended to the end of
 *    struct skald_host, struct skald_plugin_desc, an ops struct or a view
 *    struct; a new header, type, constant or provides bit.
 *  - Anything else bumps SKALD_ABI_MAJOR and resets MINOR to 0: removing
 *    or reordering a member, changing a type, a signature, a constant's
 *    value, the meaning of a field or a documented contract (thread,
 *    ownership, error codes).
 *  - Members are never inserted in the middle; a mistake is deprecated
 *    (left in place, documented as such) and a new member appended.
 * A broker loads a plugin when the plugin's ABI major equals the broker's
 * and its minor is not newer (the plugin may use anything up to its minor;
 * the broker provides at least that much).
 */
#ifndef SKALD_VERSION_H
#define SKALD_VERSION_H

#define SKALD_VERSION "0.1.0"
#define SKALD_VERSION_MAJOR 0
#define SKALD_VERSION_MINOR 1
#define SKALD_VERSION_PATCH 0

/* The plugin ABI these headers describe. */
#define SKALD_ABI_MAJOR 1
#define SKALD_ABI_MINOR 1

#endif
