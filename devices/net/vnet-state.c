/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * virtio-net's part of a migration stream (the transport saves features,
 * status and the queues): the configuration the device was created with
 * (checked, never restored), the guest-visible state (5.1.4 config space:
 * MAC and status; the link; the multiqueue pairs in use, 5.1.6.5.5; the
 * receive offloads the driver left on, 5.1.6.5.6.2) and the receive filter
 * (5.1.6.5.1, 5.1.6.5.2).  Frames in flight are not state: a frame taken
 * from the backend but not yet placed is dropped, as a wire would.
 */
#include <errno.h>
#include <string.h>

#include <glib.h>

#include "net/vnet-priv.h"
#include "virtio/virtio.h"

enum {
        VNET_SEC_CONFIG = VIRTIO_STATE_SEC_DEVICE,
        VNET_SEC_NET,
        VNET_SEC_FILTER,
};

enum { CF_PAIRS = 1, CF_MTU, CF_QUEUE_SIZE, CF_MAC, CF_OFFERED };
enum { NT_FEATURES = 1, NT_MAC, NT_STATUS, NT_LINK_UP, NT_ACTIVE_PAIRS };
enum { FL_PROMISC = 1, FL_ALLMULTI, FL_UNI_OVERFLOW, FL_MULTI_OVERFLOW, FL_UNI, FL_MULTI };

#define TABLE_MAX (VNET_MAC_TABLE_MAX * 6)

static const DevStateFieldSpec config_fields[] = {
        { CF_PAIRS, DEVSTATE_T_U16, "max-pairs", 0, true },
        { CF_MTU, DEVSTATE_T_U16, "mtu", 0, true },
        { CF_QUEUE_SIZE, DEVSTATE_T_U16, "queue-size", 0, true },
        { CF_MAC, DEVSTATE_T_BYTES, "configured-mac", 6, true },
        { CF_OFFERED, DEVSTATE_T_U64, "offered-features", 0, true },
};

static const DevStateFieldSpec net_fields[] = {
        { NT_FEATURES, DEVSTATE_T_U64, "features", 0, true },
        { NT_MAC, DEVSTATE_T_BYTES, "mac", 6, true },
        { NT_STATUS, DEVSTATE_T_U16, "status", 0, true },
        { NT_LINK_UP, DEVSTATE_T_BOOL, "link-up", 0, true },
        { NT_ACTIVE_PAIRS, DEVSTATE_T_U16, "active-pairs", 0, true },
};

static const DevStateFieldSpec filter_fields[] = {
        { FL_PROMISC, DEVSTATE_T_BOOL, "promisc", 0, true },
        { FL_ALLMULTI, DEVSTATE_T_BOOL, "allmulti", 0, true },
        { FL_UNI_OVERFLOW, DEVSTATE_T_BOOL, "unicast-overflow", 0, true },
        { FL_MULTI_OVERFLOW, DEVSTATE_T_BOOL, "multicast-overflow", 0, true },
        { FL_UNI, DEVSTATE_T_BYTES, "unicast-macs", TABLE_MAX, true },
        { FL_MULTI, DEVSTATE_T_BYTES, "multicast-macs", TABLE_MAX, true },
};

const DevStateSectionSpec vnet_state_sections[] = {
        { VNET_SEC_CONFIG, "virtio-net-config", 1, true, config_fields, G_N_ELEMENTS(config_fields) },
        { VNET_SEC_NET, "virtio-net", 1, true, net_fields, G_N_ELEMENTS(net_fields) },
        { VNET_SEC_FILTER, "virtio-net-rx-filter", 1, true, filter_fields, G_N_ELEMENTS(filter_fields) },
};
const size_t vnet_n_state_sections = G_N_ELEMENTS(vnet_state_sections);

/* Receive offloads the driver may turn off at run time (5.1.6.5.6.2). */
static const uint64_t runtime_offloads =
        VIRTIO_BIT(VIRTIO_NET_F_GUEST_CSUM) | VIRTIO_BIT(VIRTIO_NET_F_GUEST_TSO4) |
        VIRTIO_BIT(VIRTIO_NET_F_GUEST_TSO6) | VIRTIO_BIT(VIRTIO_NET_F_GUEST_ECN);

int vnet_state_save(void *opaque, DevStateWriter *w) {
        VNet *n = opaque;
        VNetFilter f;
        uint8_t mac[6];

        pthread_mutex_lock(&n->lock);
        memcpy(mac, n->mac, 6);
        pthread_mutex_unlock(&n->lock);
        pthread_rwlock_rdlock(&n->filter_lock);
        f = n->filter;
        pthread_rwlock_unlock(&n->filter_lock);

        devstate_writer_begin(w, VNET_SEC_CONFIG, 0, DEVSTATE_F_MANDATORY);
        devstate_put_u16(w, CF_PAIRS, (uint16_t) n->opt.pairs);
        devstate_put_u16(w, CF_MTU, n->opt.mtu);
        devstate_put_u16(w, CF_QUEUE_SIZE, n->opt.queue_size);
        devstate_put_bytes(w, CF_MAC, n->opt.mac, 6);
        devstate_put_u64(w, CF_OFFERED, vnet_offered_features(n));
        devstate_writer_end(w);

        devstate_writer_begin(w, VNET_SEC_NET, 0, DEVSTATE_F_MANDATORY);
        devstate_put_u64(w, NT_FEATURES, n->features);
        devstate_put_bytes(w, NT_MAC, mac, 6);
        devstate_put_u16(w, NT_STATUS, __atomic_load_n(&n->status, __ATOMIC_ACQUIRE));
        devstate_put_bool(w, NT_LINK_UP, __atomic_load_n(&n->link_up, __ATOMIC_ACQUIRE));
        devstate_put_u16(w, NT_ACTIVE_PAIRS, (uint16_t) __atomic_load_n(&n->active_pairs, __ATOMIC_ACQUIRE));
        devstate_writer_end(w);

        devstate_writer_begin(w, VNET_SEC_FILTER, 0, DEVSTATE_F_MANDATORY);
        devstate_put_bool(w, FL_PROMISC, f.promisc);
        devstate_put_bool(w, FL_ALLMULTI, f.allmulti);
        devstate_put_bool(w, FL_UNI_OVERFLOW, f.uni_overflow);
        devstate_put_bool(w, FL_MULTI_OVERFLOW, f.multi_overflow);
        devstate_put_bytes(w, FL_UNI, f.uni, (size_t) f.n_uni * 6);
        devstate_put_bytes(w, FL_MULTI, f.multi, (size_t) f.n_multi * 6);
        return devstate_writer_end(w);
}

/* Everything this layer restores, read from a stream. */
typedef struct VNetState {
        uint64_t features;
        uint8_t mac[6];
        uint16_t status, active_pairs;
        bool link_up;
        VNetFilter filter;
} VNetState;

#define GET(fn, s, id, out)                                                                             \
        do {                                                                                            \
                int r_ = fn(s, id, out);                                                                \
                if (r_ < 0)                                                                             \
                        return devstate_reader_fail(r, r_, "virtio-net state: field %u of %s unreadable", id, \
                                                    devstate_section_name(s));                          \
        } while (0)

static int get_mac(DevStateReader *r, const DevStateSection *s, uint16_t id, uint8_t mac[6]) {
        const void *p;
        size_t len;
        int ret = devstate_get_bytes(s, id, &p, &len);

        if (ret < 0 || len != 6)
                return devstate_reader_fail(r, ret < 0 ? ret : -EINVAL, "virtio-net state: a MAC address is %zu bytes",
                                            ret < 0 ? 0 : len);
        memcpy(mac, p, 6);
        return 0;
}

static int get_table(DevStateReader *r, const DevStateSection *s, uint16_t id, uint8_t (*table)[6],
                     unsigned *count) {
        const void *p;
        size_t len;
        int ret = devstate_get_bytes(s, id, &p, &len);

        if (ret < 0)
                return devstate_reader_fail(r, ret, "virtio-net state: receive filter table unreadable");
        if (len % 6 || len > TABLE_MAX)
                return devstate_reader_fail(r, -EINVAL, "virtio-net state: a MAC table of %zu bytes", len);
        *count = (unsigned) (len / 6);
        memcpy(table, p, len);
        return 0;
}

/* Read and check this layer's sections into *st; features: what the driver negotiated. */
static int read_state(VNet *n, DevStateReader *r, uint64_t features, bool started, VNetState *st) {
        const DevStateSection *cf = devstate_reader_find(r, VNET_SEC_CONFIG, 0);
        const DevStateSection *nt = devstate_reader_find(r, VNET_SEC_NET, 0);
        const DevStateSection *fl = devstate_reader_find(r, VNET_SEC_FILTER, 0);
        uint16_t pairs, mtu, qsize;
        uint8_t cmac[6];
        unsigned max_active = virtio_has(features, VIRTIO_NET_F_MQ) ? n->opt.pairs : 1;

        GET(devstate_get_u16, cf, CF_PAIRS, &pairs);
        GET(devstate_get_u16, cf, CF_MTU, &mtu);
        GET(devstate_get_u16, cf, CF_QUEUE_SIZE, &qsize);
        if (get_mac(r, cf, CF_MAC, cmac) < 0)
                return devstate_reader_errno(r);
        if (pairs != n->opt.pairs || mtu != n->opt.mtu || qsize != n->opt.queue_size ||
            memcmp(cmac, n->opt.mac, 6) != 0)
                return devstate_reader_fail(r, -EINVAL,
                                            "virtio-net state comes from a device with %u queue pairs, MTU %u, queue "
                                            "size %u, MAC %02x:%02x:%02x:%02x:%02x:%02x; this one has %u, %u, %u, "
                                            "%02x:%02x:%02x:%02x:%02x:%02x: create the destination with the same "
                                            "options", pairs, mtu, qsize, cmac[0], cmac[1], cmac[2], cmac[3], cmac[4],
                                            cmac[5], n->opt.pairs, n->opt.mtu, n->opt.queue_size, n->opt.mac[0],
                                            n->opt.mac[1], n->opt.mac[2], n->opt.mac[3], n->opt.mac[4], n->opt.mac[5]);

        GET(devstate_get_u64, nt, NT_FEATURES, &st->features);
        GET(devstate_get_u16, nt, NT_STATUS, &st->status);
        GET(devstate_get_bool, nt, NT_LINK_UP, &st->link_up);
        GET(devstate_get_u16, nt, NT_ACTIVE_PAIRS, &st->active_pairs);
        if (get_mac(r, nt, NT_MAC, st->mac) < 0)
                return devstate_reader_errno(r);
        if (st->mac[0] & 1)
                return devstate_reader_fail(r, -EINVAL, "virtio-net state: multicast station address");
        if (st->status & ~(VIRTIO_NET_S_LINK_UP | VIRTIO_NET_S_ANNOUNCE))
                return devstate_reader_fail(r, -EINVAL, "virtio-net state: status 0x%x has undefined bits",
                                            st->status);
        if (!!(st->status & VIRTIO_NET_S_LINK_UP) != st->link_up)
                return devstate_reader_fail(r, -EINVAL, "virtio-net state: link state and status disagree");
        if (started) {
                /* Only receive offloads may differ from what was negotiated, and only by being off. */
                if ((st->features & ~features) || ((st->features ^ features) & ~runtime_offloads) ||
                    vnet_check_features(st->features) < 0)
                        return devstate_reader_fail(r, -EINVAL,
                                                    "virtio-net state: features 0x%" G_GINT64_MODIFIER "x in use do "
                                                    "not match the negotiated 0x%" G_GINT64_MODIFIER "x",
                                                    st->features, features);
                if (st->active_pairs == 0 || st->active_pairs > max_active)
                        return devstate_reader_fail(r, -EINVAL, "virtio-net state: %u queue pairs in use, 1..%u "
                                                    "possible", st->active_pairs, max_active);
        }

        memset(&st->filter, 0, sizeof(st->filter));
        GET(devstate_get_bool, fl, FL_PROMISC, &st->filter.promisc);
        GET(devstate_get_bool, fl, FL_ALLMULTI, &st->filter.allmulti);
        GET(devstate_get_bool, fl, FL_UNI_OVERFLOW, &st->filter.uni_overflow);
        GET(devstate_get_bool, fl, FL_MULTI_OVERFLOW, &st->filter.multi_overflow);
        if (get_table(r, fl, FL_UNI, st->filter.uni, &st->filter.n_uni) < 0 ||
            get_table(r, fl, FL_MULTI, st->filter.multi, &st->filter.n_multi) < 0)
                return devstate_reader_errno(r);
        return 0;
}

int vnet_state_check(void *opaque, DevStateReader *r, uint64_t features, bool started) {
        VNetState st;

        return read_state(opaque, r, features, started, &st);
}

int vnet_state_apply(void *opaque, DevStateReader *r, uint64_t features, bool started) {
        VNet *n = opaque;
        VNetState st;
        int ret = read_state(n, r, features, started, &st);

        if (ret < 0)
                return ret;
        pthread_mutex_lock(&n->lock);
        memcpy(n->mac, st.mac, 6);
        pthread_mutex_unlock(&n->lock);
        __atomic_store_n(&n->status, st.status, __ATOMIC_RELEASE);
        __atomic_store_n(&n->link_up, st.link_up, __ATOMIC_RELEASE);
        pthread_rwlock_wrlock(&n->filter_lock);
        n->filter = st.filter;
        pthread_rwlock_unlock(&n->filter_lock);
        if (!started)
                return 0;
        ret = vnet_bind(n, features, st.features, st.active_pairs);
        if (ret < 0)
                return devstate_reader_fail(r, ret, "virtio-net state: %u queue pairs in use but their queues are "
                                            "not all started, or the backend refused the offloads (%s)",
                                            st.active_pairs, g_strerror(-ret));
        return 0;
}
