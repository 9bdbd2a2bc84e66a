/*
 * Prints the offset and size of every member of the ABI 1.0 structs, and
 * the value of every 1.0 constant. Built twice by
 * tests/integration/96-plugin-headers.t, against tests/abi/v1.0 and
 * against include/: the outputs must be equal, so no 1.0 member moved,
 * changed size or changed value. (New members, appended, do not show.)
 */
#include <stddef.h>
#include <stdio.h>

#include <skald/auth.h>
#include <skald/host.h>
#include <skald/search.h>

#define M(type, member)                                                 \
	printf("%s.%s %zu %zu\n", #type, #member, offsetof(type, member), \
	       sizeof(((type *)0)->member))
#define C(name) printf("%s %lld\n", #name, (long long)(name))

int main(void)
{
	M(struct skald_plugin_desc, abi_major);
	M(struct skald_plugin_desc, abi_minor);
	M(struct skald_plugin_desc, desc_size);
	M(struct skald_plugin_desc, build_sig);
	M(struct skald_plugin_desc, name);
	M(struct skald_plugin_desc, version);
	M(struct skald_plugin_desc, description);
	M(struct skald_plugin_desc, provides);
	M(struct skald_plugin_desc, config_schema);
	M(struct skald_plugin_desc, init);
	M(struct skald_plugin_desc, start);
	M(struct skald_plugin_desc, stop);
	M(struct skald_plugin_desc, fini);
	printf("sizeof skald_config_key %zu\n",
	       sizeof(struct skald_config_key));
	M(struct skald_config_key, name);
	M(struct skald_config_key, type);
	M(struct skald_config_key, flags);
	M(struct skald_config_key, def);
	M(struct skald_config_key, min);
	M(struct skald_config_key, max);
	M(struct skald_config_key, choices);
	M(struct skald_config_key, doc);
	printf("sizeof skald_error %zu\n", sizeof(struct skald_error));

	M(struct skald_host, abi_major);
	M(struct skald_host, abi_minor);
	M(struct skald_host, size);
	M(struct skald_host, build_sig);
	M(struct skald_host, plugin_name);
	M(struct skald_host, broker_version);
	M(struct skald_host, log);
	M(struct skald_host, vlog);
	M(struct skald_host, mem_alloc);
	M(struct skald_host, mem_realloc);
	M(struct skald_host, mem_free);
	M(struct skald_host, metric_counter);
	M(struct skald_host, metric_gauge);
	M(struct skald_host, metric_histogram);
	M(struct skald_host, metric_add);
	M(struct skald_host, metric_set);
	M(struct skald_host, metric_observe);
	M(struct skald_host, now_ms);
	M(struct skald_host, monotonic_ms);
	M(struct skald_host, timer_add);
	M(struct skald_host, timer_del);
	M(struct skald_host, post);
	M(struct skald_host, submit);
	M(struct skald_host, config_string);
	M(struct skald_host, config_int);
	M(struct skald_host, config_bool);
	M(struct skald_host, config_given);
	M(struct skald_host, kv_put);
	M(struct skald_host, kv_get);
	M(struct skald_host, kv_del);
	M(struct skald_host, kv_list);
	M(struct skald_host, records_foreach);
	M(struct skald_host, register_storage_tier);
	M(struct skald_host, tier_done);
	M(struct skald_host, tier_list_add);
	printf("sizeof skald_label %zu\n", sizeof(struct skald_label));
	M(struct skald_label, name);
	M(struct skald_label, value);

	printf("sizeof skald_header_view %zu\n",
	       sizeof(struct skald_header_view));
	M(struct skald_header_view, key);
	M(struct skald_header_view, value);
	M(struct skald_header_view, key_len);
	M(struct skald_header_view, value_len);
	M(struct skald_record_view, size);
	M(struct skald_record_view, offset_delta);
	M(struct skald_record_view, offset);
	M(struct skald_record_view, timestamp);
	M(struct skald_record_view, key);
	M(struct skald_record_view, value);
	M(struct skald_record_view, key_len);
	M(struct skald_record_view, value_len);
	M(struct skald_record_view, headers);
	M(struct skald_record_view, n_headers);
	M(struct skald_record_view, attributes);
	M(struct skald_record_view, reserved);
	M(struct skald_record_view, base_offset);
	M(struct skald_record_view, producer_id);

	printf("sizeof skald_tier_file %zu\n", sizeof(struct skald_tier_file));
	M(struct skald_tier_file, suffix);
	M(struct skald_tier_file, path);
	M(struct skald_tier_file, fd);
	M(struct skald_tier_file, crc32c);
	M(struct skald_tier_file, size);
	M(struct skald_tier_segment, size);
	M(struct skald_tier_segment, n_files);
	M(struct skald_tier_segment, key);
	M(struct skald_tier_segment, topic);
	M(struct skald_tier_segment, partition);
	M(struct skald_tier_segment, reserved);
	M(struct skald_tier_segment, base_offset);
	M(struct skald_tier_segment, end_offset);
	M(struct skald_tier_segment, max_timestamp);
	M(struct skald_tier_segment, files);
	M(struct skald_tier_get, size);
	M(struct skald_tier_get, fd);
	M(struct skald_tier_get, key);
	M(struct skald_tier_get, offset);
	M(struct skald_tier_get, length);
	M(struct skald_storage_tier_ops, size);
	M(struct skald_storage_tier_ops, flags);
	M(struct skald_storage_tier_ops, upload);
	M(struct skald_storage_tier_ops, download);
	M(struct skald_storage_tier_ops, remove);
	M(struct skald_storage_tier_ops, list);

	C(SKALD_ABI_MAJOR);
	C(SKALD_BUILD_SIG);
	C(SKALD_PLUGIN_DESC_V1_SIZE);
	C(SKALD_HOST_V1_SIZE);
	C(SKALD_PROVIDES_GENERIC);
	C(SKALD_PROVIDES_STORAGE_TIER);
	C(SKALD_PROVIDES_SASL);
	C(SKALD_PROVIDES_AUTHORIZER);
	C(SKALD_PROVIDES_INDEXER);
	C(SKALD_CONFIG_BOOL);
	C(SKALD_CONFIG_INT);
	C(SKALD_CONFIG_STRING);
	C(SKALD_CONFIG_REQUIRED);
	C(SKALD_CONFIG_SECRET);
	C(SKALD_LOG_DEBUG);
	C(SKALD_LOG_INFO);
	C(SKALD_LOG_WARN);
	C(SKALD_LOG_ERROR);
	C(SKALD_RECORD_ATTR_CODEC_MASK);
	C(SKALD_RECORD_ATTR_LOG_APPEND_TIME);
	C(SKALD_RECORD_ATTR_TRANSACTIONAL);
	C(SKALD_RECORD_ATTR_CONTROL);
	C(SKALD_RECORDS_VERIFY_CRC);
	C(SKALD_TIER_BLOCKING);
	printf("%s\n", SKALD_PLUGIN_SYMBOL);
	return 0;
}
