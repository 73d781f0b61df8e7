/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * NVM Express 1.4 definitions the controller model uses: registers (§3.1),
 * queue entries (§4.2, §4.6), status codes (§4.6.1.2), admin and NVM
 * command opcodes (§5, §6), identify/log/feature identifiers.  Little-endian
 * host assumed (x86-64, arm64), as the rest of the project.
 */
#pragma once

#include <stdint.h>

/* §3.1 Controller registers (BAR0 offsets). */
enum {
        NVME_REG_CAP = 0x00,
        NVME_REG_VS = 0x08,
        NVME_REG_INTMS = 0x0c,
        NVME_REG_INTMC = 0x10,
        NVME_REG_CC = 0x14,
        NVME_REG_CSTS = 0x1c,
        NVME_REG_NSSR = 0x20,
        NVME_REG_AQA = 0x24,
        NVME_REG_ASQ = 0x28,
        NVME_REG_ACQ = 0x30,
        NVME_REG_CMBLOC = 0x38,
        NVME_REG_CMBSZ = 0x3c,
        NVME_REG_DBS = 0x1000,
};

/* CAP fields (§3.1.1). */
#define NVME_CAP_MQES(v)        ((uint64_t) (v) & 0xffff)
#define NVME_CAP_CQR            (1ull << 16)
#define NVME_CAP_TO(v)          ((uint64_t) (v) << 24)          /* 500 ms units */
#define NVME_CAP_DSTRD(v)       ((uint64_t) (v) << 32)
#define NVME_CAP_CSS_NVM        (1ull << 37)
#define NVME_CAP_MPSMIN(v)      ((uint64_t) (v) << 48)
#define NVME_CAP_MPSMAX(v)      ((uint64_t) (v) << 52)

/* CC (§3.1.5). */
#define NVME_CC_EN              (1u << 0)
#define NVME_CC_CSS(cc)         (((cc) >> 4) & 0x7)
#define NVME_CC_MPS(cc)         (((cc) >> 7) & 0xf)
#define NVME_CC_AMS(cc)         (((cc) >> 11) & 0x7)
#define NVME_CC_SHN(cc)         (((cc) >> 14) & 0x3)
#define NVME_CC_IOSQES(cc)      (((cc) >> 16) & 0xf)
#define NVME_CC_IOCQES(cc)      (((cc) >> 20) & 0xf)
#define NVME_CC_WRITABLE        0x00fffff1u

/* CSTS (§3.1.6). */
#define NVME_CSTS_RDY           (1u << 0)
#define NVME_CSTS_CFS           (1u << 1)
#define NVME_CSTS_SHST_MASK     (3u << 2)
#define NVME_CSTS_SHST_OCCUR    (1u << 2)
#define NVME_CSTS_SHST_DONE     (2u << 2)

#define NVME_VS_1_4             0x00010400u

/* §4.2 Submission queue entry. */
typedef struct NvmeSqe {
        uint8_t opcode;
        uint8_t flags;          /* FUSE 1:0, PSDT 7:6 */
        uint16_t cid;
        uint32_t nsid;
        uint32_t cdw2, cdw3;
        uint64_t mptr;
        union {
                struct {
                        uint64_t prp1, prp2;
                };
                uint8_t sgl1[16];
        };
        uint32_t cdw10, cdw11, cdw12, cdw13, cdw14, cdw15;
} NvmeSqe;
_Static_assert(sizeof(NvmeSqe) == 64, "SQE is 64 bytes");

#define NVME_SQE_PSDT(flags)    (((flags) >> 6) & 0x3)
#define NVME_PSDT_PRP           0
#define NVME_PSDT_SGL_MPTR_BUF  1
#define NVME_PSDT_SGL_MPTR_SGL  2
#define NVME_SQE_FUSE(flags)    ((flags) & 0x3)

/* §4.6 Completion queue entry. */
typedef struct NvmeCqe {
        uint32_t dw0;
        uint32_t dw1;
        uint16_t sq_head;
        uint16_t sq_id;
        uint16_t cid;
        uint16_t status;        /* phase bit 0, SC 8:1, SCT 11:9, CRD 13:12, M 14, DNR 15 */
} NvmeCqe;
_Static_assert(sizeof(NvmeCqe) == 16, "CQE is 16 bytes");

/*
 * Status, as the device passes it around: SC in 7:0, SCT in 10:8, DNR in
 * bit 14.  Shifted left by one it is the CQE status field without phase.
 */
typedef uint16_t NvmeStatus;
#define NVME_SCT_GENERIC        0x0
#define NVME_SCT_CMD_SPECIFIC   0x1
#define NVME_SCT_MEDIA          0x2
#define NVME_DNR                0x4000u
#define NVME_ST(sct, sc)        ((NvmeStatus) (((sct) << 8) | (sc)))
#define NVME_ST_SCT(st)         (((st) >> 8) & 0x7)
#define NVME_ST_SC(st)          ((st) & 0xff)

enum {
        NVME_SUCCESS = 0,
        /* Generic (§4.6.1.2.1) */
        NVME_SC_INVALID_OPCODE = NVME_ST(0, 0x01) | NVME_DNR,
        NVME_SC_INVALID_FIELD = NVME_ST(0, 0x02) | NVME_DNR,
        NVME_SC_CID_CONFLICT = NVME_ST(0, 0x03) | NVME_DNR,
        NVME_SC_DATA_XFER_ERROR = NVME_ST(0, 0x04),
        NVME_SC_INTERNAL = NVME_ST(0, 0x06),
        NVME_SC_ABORT_REQ = NVME_ST(0, 0x07),
        NVME_SC_ABORT_SQ_DELETED = NVME_ST(0, 0x08),
        NVME_SC_ABORT_MISSING_FUSE = NVME_ST(0, 0x0a) | NVME_DNR,
        NVME_SC_INVALID_NS = NVME_ST(0, 0x0b) | NVME_DNR,
        NVME_SC_CMD_SEQ_ERROR = NVME_ST(0, 0x0c) | NVME_DNR,
        NVME_SC_SGL_INVALID_SEG = NVME_ST(0, 0x0d) | NVME_DNR,
        NVME_SC_SGL_INVALID_COUNT = NVME_ST(0, 0x0e) | NVME_DNR,
        NVME_SC_SGL_DATA_LEN_INVALID = NVME_ST(0, 0x0f) | NVME_DNR,
        NVME_SC_SGL_TYPE_INVALID = NVME_ST(0, 0x11) | NVME_DNR,
        NVME_SC_PRP_OFFSET_INVALID = NVME_ST(0, 0x13) | NVME_DNR,
        NVME_SC_SGL_OFFSET_INVALID = NVME_ST(0, 0x16) | NVME_DNR,
        NVME_SC_NS_WRITE_PROTECTED = NVME_ST(0, 0x20) | NVME_DNR,
        NVME_SC_LBA_RANGE = NVME_ST(0, 0x80) | NVME_DNR,
        NVME_SC_CAP_EXCEEDED = NVME_ST(0, 0x81) | NVME_DNR,
        NVME_SC_NS_NOT_READY = NVME_ST(0, 0x82),
        /* Command specific (§4.6.1.2.2) */
        NVME_SC_CQ_INVALID = NVME_ST(1, 0x00) | NVME_DNR,
        NVME_SC_INVALID_QID = NVME_ST(1, 0x01) | NVME_DNR,
        NVME_SC_INVALID_QSIZE = NVME_ST(1, 0x02) | NVME_DNR,
        NVME_SC_ABORT_LIMIT = NVME_ST(1, 0x03) | NVME_DNR,
        NVME_SC_AER_LIMIT = NVME_ST(1, 0x05) | NVME_DNR,
        NVME_SC_INVALID_VECTOR = NVME_ST(1, 0x08) | NVME_DNR,
        NVME_SC_INVALID_LOG_PAGE = NVME_ST(1, 0x09) | NVME_DNR,
        NVME_SC_INVALID_QUEUE_DELETION = NVME_ST(1, 0x0c) | NVME_DNR,
        NVME_SC_FEAT_NOT_SAVEABLE = NVME_ST(1, 0x0d) | NVME_DNR,
        NVME_SC_FEAT_NOT_CHANGEABLE = NVME_ST(1, 0x0e) | NVME_DNR,
        NVME_SC_FEAT_NOT_NS_SPECIFIC = NVME_ST(1, 0x0f) | NVME_DNR,
        /* Media and data integrity (§4.6.1.2.3) */
        NVME_SC_WRITE_FAULT = NVME_ST(2, 0x80),
        NVME_SC_UNRECOVERED_READ = NVME_ST(2, 0x81),
};

/* §5 Admin opcodes. */
enum {
        NVME_ADM_DELETE_SQ = 0x00,
        NVME_ADM_CREATE_SQ = 0x01,
        NVME_ADM_GET_LOG_PAGE = 0x02,
        NVME_ADM_DELETE_CQ = 0x04,
        NVME_ADM_CREATE_CQ = 0x05,
        NVME_ADM_IDENTIFY = 0x06,
        NVME_ADM_ABORT = 0x08,
        NVME_ADM_SET_FEATURES = 0x09,
        NVME_ADM_GET_FEATURES = 0x0a,
        NVME_ADM_ASYNC_EVENT = 0x0c,
        NVME_ADM_DBBUF_CONFIG = 0x7c,
};

/* §6 NVM command set opcodes. */
enum {
        NVME_CMD_FLUSH = 0x00,
        NVME_CMD_WRITE = 0x01,
        NVME_CMD_READ = 0x02,
        NVME_CMD_WRITE_ZEROES = 0x08,
        NVME_CMD_DSM = 0x09,
};

/* §5.15 Identify CNS values. */
enum {
        NVME_CNS_NS = 0x00,
        NVME_CNS_CTRL = 0x01,
        NVME_CNS_NS_ACTIVE_LIST = 0x02,
        NVME_CNS_NS_DESC_LIST = 0x03,
        NVME_CNS_CS_CTRL = 0x06,                /* NVMe 2.0: I/O command set specific controller */
};

/* Command set identifiers (CSI, Identify CDW11 bits 31:24). */
enum {
        NVME_CSI_NVM = 0x00,
};

/* Write Zeroes size limit for CNS 06h, in units of 4 KiB pages as a power
 * of two: 32 MiB, which the 16-bit NLB reaches even with 512-byte blocks. */
#define NVME_WZSL               13u

/* §5.14 Log page identifiers. */
enum {
        NVME_LOG_ERROR = 0x01,
        NVME_LOG_SMART = 0x02,
        NVME_LOG_FW_SLOT = 0x03,
        NVME_LOG_CHANGED_NS = 0x04,
        NVME_LOG_CMD_EFFECTS = 0x05,
};

/* §5.21.1 Feature identifiers. */
enum {
        NVME_FEAT_ARBITRATION = 0x01,
        NVME_FEAT_POWER_MGMT = 0x02,
        NVME_FEAT_TEMP_THRESH = 0x04,
        NVME_FEAT_ERR_RECOVERY = 0x05,
        NVME_FEAT_VOLATILE_WC = 0x06,
        NVME_FEAT_NUM_QUEUES = 0x07,
        NVME_FEAT_IRQ_COALESCE = 0x08,
        NVME_FEAT_IRQ_CONFIG = 0x09,
        NVME_FEAT_ASYNC_EVENT = 0x0b,
        NVME_FEAT_TIMESTAMP = 0x0e,
};

/* §5.2 Asynchronous event types and information. */
enum {
        NVME_AER_TYPE_ERROR = 0,
        NVME_AER_TYPE_SMART = 1,
        NVME_AER_TYPE_NOTICE = 2,
};
enum {
        NVME_AER_INFO_ERR_INVALID_DB = 0x00,
        NVME_AER_INFO_ERR_INVALID_DB_VALUE = 0x01,
        NVME_AER_INFO_NOTICE_NS_ATTR = 0x00,
};

/* §4.4 SGL descriptor types (byte 15, bits 7:4). */
enum {
        NVME_SGL_DATA_BLOCK = 0x0,
        NVME_SGL_BIT_BUCKET = 0x1,
        NVME_SGL_SEGMENT = 0x2,
        NVME_SGL_LAST_SEGMENT = 0x3,
};

typedef struct NvmeSglDesc {
        uint64_t addr;
        uint32_t len;
        uint8_t rsvd[3];
        uint8_t type;           /* type 7:4, subtype 3:0 */
} NvmeSglDesc;
_Static_assert(sizeof(NvmeSglDesc) == 16, "SGL descriptor is 16 bytes");

/* §6.7 Dataset Management range. */
typedef struct NvmeDsmRange {
        uint32_t attributes;
        uint32_t nlb;           /* not 0's based */
        uint64_t slba;
} NvmeDsmRange;
_Static_assert(sizeof(NvmeDsmRange) == 16, "DSM range is 16 bytes");

/* §5.14.1.1 Error information log entry. */
typedef struct NvmeErrorLogEntry {
        uint64_t error_count;
        uint16_t sqid;
        uint16_t cid;
        uint16_t status;        /* phase bit 0 */
        uint16_t param_loc;
        uint64_t lba;
        uint32_t nsid;
        uint8_t vendor;
        uint8_t trtype;
        uint16_t rsvd1;
        uint64_t cmd_specific;
        uint16_t trtype_specific;
        uint8_t rsvd2[22];
} NvmeErrorLogEntry;
_Static_assert(sizeof(NvmeErrorLogEntry) == 64, "error log entry is 64 bytes");

/* §5.14.1.2 SMART / Health information. */
typedef struct NvmeSmartLog {
        uint8_t critical_warning;
        uint16_t temperature;
        uint8_t avail_spare;
        uint8_t spare_thresh;
        uint8_t percent_used;
        uint8_t endu_grp_crit_warn;
        uint8_t rsvd7[25];
        uint64_t data_units_read[2];
        uint64_t data_units_written[2];
        uint64_t host_reads[2];
        uint64_t host_writes[2];
        uint64_t ctrl_busy_time[2];
        uint64_t power_cycles[2];
        uint64_t power_on_hours[2];
        uint64_t unsafe_shutdowns[2];
        uint64_t media_errors[2];
        uint64_t num_err_log_entries[2];
        uint32_t warning_temp_time;
        uint32_t critical_temp_time;
        uint16_t temp_sensor[8];
        uint8_t rsvd216[296];
} __attribute__((packed)) NvmeSmartLog;
_Static_assert(sizeof(NvmeSmartLog) == 512, "SMART log is 512 bytes");

/* §5.15.3 Namespace identification descriptor types. */
enum {
        NVME_NIDT_EUI64 = 1,
        NVME_NIDT_NGUID = 2,
        NVME_NIDT_UUID = 3,
};

#define NVME_PAGE_SIZE          4096u
#define NVME_PAGE_MASK          (NVME_PAGE_SIZE - 1)
#define NVME_IDENTIFY_SIZE      4096u
