/*
 * wr_api_preload.c — LD_PRELOAD for the interop suite's ibv-*-wr rows.
 *
 * perftest 4.5+0.17 takes its ibv_wr_* ("new post send") path only on
 * devices it recognises by vendor_part_id as mlx5 or EFA
 * (perftest_resources.c, "those are devices supporting new post send");
 * on rxe and on softverbs it silently uses ibv_post_send, so its default
 * run never reaches ibv_wr_*. This interposer makes ibv_query_device report
 * vendor_part_id 4115 (ConnectX-4), which in that perftest version changes
 * nothing but the choice of post path; the tool itself is unmodified and
 * every verb still goes to the library under test. Opt out with
 * WR_API_PRELOAD_PART=0.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdint.h>
#include <stdlib.h>

struct ibv_context;
/* struct ibv_device_attr up to vendor_part_id (rdma-core 44 verbs.h):
 * char fw_ver[64]; __be64 node_guid, sys_image_guid; uint64_t max_mr_size,
 * page_size_cap; uint32_t vendor_id, vendor_part_id; ... */
struct attr_head {
	char fw_ver[64];
	uint64_t node_guid, sys_image_guid, max_mr_size, page_size_cap;
	uint32_t vendor_id, vendor_part_id;
};

int ibv_query_device(struct ibv_context *ctx, void *attr)
{
	static int (*real)(struct ibv_context *, void *);
	if (!real)
		real = (int (*)(struct ibv_context *, void *))dlvsym(RTLD_NEXT, "ibv_query_device", "IBVERBS_1.1");
	if (!real)
		return 95; /* EOPNOTSUPP */
	int rc = real(ctx, attr);
	const char *p = getenv("WR_API_PRELOAD_PART");
	long part = p ? strtol(p, NULL, 0) : 4115;
	if (rc == 0 && part)
		((struct attr_head *)attr)->vendor_part_id = (uint32_t)part;
	return rc;
}
