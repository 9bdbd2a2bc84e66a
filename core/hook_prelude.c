/*
 * The trusted Lua sources of every hook state, embedded in the binary so
 * that the broker never loads them from a path an attacker could change:
 * scripts/skald/prelude.lua (the sandbox) and scripts/skald/skald.lua (the
 * `skald` module, which the SDK installs as is). Both end with a NUL byte.
 * The Makefile makes this object depend on the two files; paths are
 * relative to the top of the tree, where make runs the compiler.
 */
__asm__(".section .rodata\n"
	".global sk_hook_prelude_lua\n"
	".type sk_hook_prelude_lua, %object\n"
	"sk_hook_prelude_lua:\n"
	".incbin \"scripts/skald/prelude.lua\"\n"
	".byte 0\n"
	".global sk_hook_skald_lua\n"
	".type sk_hook_skald_lua, %object\n"
	"sk_hook_skald_lua:\n"
	".incbin \"scripts/skald/skald.lua\"\n"
	".byte 0\n"
	".previous\n");
