/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Identify (NVMe 1.4 §5.15): controller (CNS 01h), namespace (00h), active
 * namespace list (02h), namespace identification descriptors (03h), and
 * the NVM command set's controller data (06h, NVMe 2.0; Linux asks for it
 * whenever VS >= 1.2 to learn the Write Zeroes and DSM limits).
 * Capability fields advertise only what the model implements.
 */
#include <string.h>

#include <glib.h>

#include "nvme-internal.h"

static void put16(uint8_t *p, uint16_t v) { memcpy(p, &v, 2); }
static void put32(uint8_t *p, uint32_t v) { memcpy(p, &v, 4); }
static void put64(uint8_t *p, uint64_t v) { memcpy(p, &v, 8); }

/* ASCII, space padded, not NUL terminated. */
static void put_str(uint8_t *p, size_t len, const char *s) {
        size_t n = strlen(s);
        memset(p, ' ', len);
        memcpy(p, s, MIN(n, len));
}

void nvme_identify_ctrl_init(NvmeCtrl *c) {
        uint8_t *id = c->id_ctrl;

        memset(id, 0, NVME_IDENTIFY_SIZE);
        put16(id + 0, NVME_PCI_VENDOR);                 /* VID */
        put16(id + 2, NVME_PCI_VENDOR);                 /* SSVID */
        put_str(id + 4, 20, c->serial);                 /* SN */
        put_str(id + 24, 40, NVME_MODEL);               /* MN */
        put_str(id + 64, 8, PACKAGE_VERSION);           /* FR */
        id[72] = 6;                                     /* RAB: 64 commands */
        id[77] = NVME_MDTS;                             /* MDTS */
        put16(id + 78, c->cfg.cntlid);                  /* CNTLID */
        put32(id + 80, NVME_VS_1_4);                    /* VER */
        put32(id + 88, 10 * 1000 * 1000);               /* RTD3E: 10 s, our flush budget */
        put32(id + 92, 1u << 8);                        /* OAES: namespace attribute notices */
        id[111] = 1;                                    /* CNTRLTYPE: I/O controller */
        put16(id + 256, 1u << 8);                       /* OACS: Doorbell Buffer Config */
        id[258] = NVME_ACL;
        id[259] = NVME_AERL;
        id[260] = (1u << 1) | 1u;                       /* FRMW: one slot, read-only */
        id[261] = (1u << 1) | (1u << 2);                /* LPA: effects log, extended data */
        id[262] = NVME_ELPE;
        id[263] = 0;                                    /* NPSS: one power state */
        put16(id + 266, NVME_WCTEMP);
        put16(id + 268, NVME_CCTEMP);
        id[512] = 0x66;                                 /* SQES */
        id[513] = 0x44;                                 /* CQES */
        put32(id + 516, NVME_MAX_NS);                   /* NN */
        /* ONCS: DSM, Write Zeroes, Save/Select in features, Timestamp. */
        put16(id + 520, (1u << 2) | (1u << 3) | (1u << 4) | (1u << 6));
        id[525] = 0x07;                                 /* VWC present, Flush of all namespaces */
        put32(id + 536, (1u << 16) | 1u);               /* SGLS: supported, bit bucket */
        g_autofree char *nqn = NULL;
        uint8_t nguid[16], eui[8], uuid[16];
        nvme_derive_ns_ids(c->cfg.host_uuid, c->name, 0, nguid, eui, uuid);
        nqn = g_strdup_printf("nqn.2024-01.org.vfu:nvme:%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x",
                              uuid[0], uuid[1], uuid[2], uuid[3], uuid[4], uuid[5], uuid[6], uuid[7],
                              uuid[8], uuid[9], uuid[10], uuid[11], uuid[12], uuid[13], uuid[14], uuid[15]);
        memcpy(id + 768, nqn, MIN(strlen(nqn), 255u));  /* SUBNQN, NUL padded */
        /* Power state 0: 25 W maximum, operational. */
        put16(id + 2048, 2500);
}

static void nvme_identify_ns_data(NvmeCtrl *c, const NvmeNs *ns, uint8_t *id) {
        put64(id + 0, ns->nsze);                        /* NSZE */
        put64(id + 8, ns->nsze);                        /* NCAP */
        put64(id + 16, ns->nsze);                       /* NUSE */
        bool dz = ns->backend->caps & BLK_CAP_DISCARD_ZEROES;
        id[24] = dz ? 1 : 0;                            /* NSFEAT: thin provisioning */
        id[25] = 0;                                     /* NLBAF: one format */
        id[26] = 0;                                     /* FLBAS */
        /* DLFEAT: deallocated blocks read as zeroes, WZ with DEAC supported. */
        id[33] = dz ? (1u | (1u << 3)) : 0;
        put16(id + 34, 0);                              /* NAWUN */
        uint32_t pages = ns->block_size < NVME_PAGE_SIZE ? NVME_PAGE_SIZE / ns->block_size : 1;
        if (ns->backend->direct && ns->backend->dio_align > ns->block_size)
                pages = ns->backend->dio_align / ns->block_size;
        put16(id + 64, (uint16_t) (pages - 1));         /* NPWG: preferred write granularity */
        put16(id + 66, (uint16_t) (pages - 1));         /* NPWA */
        id[99] = ns->read_only ? 1 : 0;                 /* NSATTR: write protected */
        memcpy(id + 104, ns->nguid, 16);                /* NGUID */
        memcpy(id + 120, ns->eui64, 8);                 /* EUI64 */
        id[128 + 2] = ns->lbads;                        /* LBAF0: LBADS, MS = 0, RP = 0 */
        id[24] |= 1u << 4;                              /* NSFEAT.OPTPERF: NPWG/NPWA valid */
}

static NvmeStatus nvme_identify_ns(NvmeCtrl *c, NvmeReq *req, uint8_t *buf) {
        uint32_t nsid = req->cmd.nsid;

        if (nsid == 0xffffffffu) {
                /* Capabilities common to all namespaces: our format list. */
                buf[25] = 0;
                buf[128 + 2] = 9;
                return NVME_SUCCESS;
        }
        if (nsid == 0 || nsid > NVME_MAX_NS)
                return NVME_SC_INVALID_NS;
        NvmeNs *ns = nvme_ns_get(c, nsid);
        if (ns)
                nvme_identify_ns_data(c, ns, buf);
        /* An allocated-but-inactive NSID returns zeroes (§5.15.2.1). */
        return NVME_SUCCESS;
}

static NvmeStatus nvme_identify_active_list(NvmeCtrl *c, NvmeReq *req, uint8_t *buf) {
        uint32_t after = req->cmd.nsid, n = 0;

        if (after >= 0xfffffffeu)
                return NVME_SC_INVALID_NS;
        for (uint32_t i = 1; i <= NVME_MAX_NS && n < 1024; i++)
                if (i > after && c->ns[i])
                        put32(buf + 4 * n++, i);
        return NVME_SUCCESS;
}

static NvmeStatus nvme_identify_desc_list(NvmeCtrl *c, NvmeReq *req, uint8_t *buf) {
        NvmeNs *ns = nvme_ns_get(c, req->cmd.nsid);
        size_t off = 0;

        if (!ns)
                return NVME_SC_INVALID_NS;
        buf[off] = NVME_NIDT_EUI64;
        buf[off + 1] = 8;
        memcpy(buf + off + 4, ns->eui64, 8);
        off += 4 + 8;
        buf[off] = NVME_NIDT_NGUID;
        buf[off + 1] = 16;
        memcpy(buf + off + 4, ns->nguid, 16);
        off += 4 + 16;
        buf[off] = NVME_NIDT_UUID;
        buf[off + 1] = 16;
        memcpy(buf + off + 4, ns->uuid, 16);
        return NVME_SUCCESS;
}

/* NVM Command Set spec 1.0 §4.1.5.2: VSL, WZSL, WUSL, DMRL, DMRSL, DMSL. */
static NvmeStatus nvme_identify_cs_ctrl(NvmeReq *req, uint8_t *buf) {
        if ((req->cmd.cdw11 >> 24) != NVME_CSI_NVM)
                return NVME_SC_INVALID_FIELD;
        buf[1] = NVME_WZSL;                             /* WZSL */
        /* VSL, WUSL: no Verify, no Write Uncorrectable.  DMRL, DMRSL,
         * DMSL: zero, no limit beyond the command's 256 ranges. */
        return NVME_SUCCESS;
}

NvmeStatus nvme_adm_identify(NvmeCtrl *c, NvmeReq *req) {
        uint8_t buf[NVME_IDENTIFY_SIZE];
        uint8_t cns = req->cmd.cdw10 & 0xff;
        NvmeStatus st;

        memset(buf, 0, sizeof(buf));
        switch (cns) {
        case NVME_CNS_NS:
                st = nvme_identify_ns(c, req, buf);
                break;
        case NVME_CNS_CTRL:
                memcpy(buf, c->id_ctrl, sizeof(buf));
                st = NVME_SUCCESS;
                break;
        case NVME_CNS_NS_ACTIVE_LIST:
                st = nvme_identify_active_list(c, req, buf);
                break;
        case NVME_CNS_NS_DESC_LIST:
                st = nvme_identify_desc_list(c, req, buf);
                break;
        case NVME_CNS_CS_CTRL:
                st = nvme_identify_cs_ctrl(req, buf);
                break;
        default:
                return NVME_SC_INVALID_FIELD;
        }
        if (st)
                return st;
        return nvme_data_to_host(c, req, buf, sizeof(buf));
}
