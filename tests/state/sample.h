/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* A sample device-state schema and stream shared by the unit tests, the golden file and the fuzz target. */
#pragma once

#include "state/devstate.h"

#define SAMPLE_TYPE "sample-dev"
#define SAMPLE_ID "dev0"

enum {
        SAMPLE_SEC_REGS = 1,            /* once, required */
        SAMPLE_SEC_QUEUE = 2,           /* instances 0..7 */
        SAMPLE_SEC_OPTIONAL = 3,        /* not required */
};

enum {
        SAMPLE_F_U8 = 1,
        SAMPLE_F_U16 = 2,
        SAMPLE_F_U32 = 3,
        SAMPLE_F_U64 = 4,
        SAMPLE_F_BOOL = 5,
        SAMPLE_F_BYTES = 6,
        SAMPLE_F_NAME = 7,
};

#define SAMPLE_BYTES_MAX 64u
#define SAMPLE_NAME_MAX 16u
#define SAMPLE_QUEUES 3u

extern const DevStateSectionSpec sample_sections[];
extern const size_t sample_n_sections;

/* The sample stream: 0 with w finished, or -errno. */
DevStateWriter *sample_write(void);
/* A reader for the sample device with the schema added. */
DevStateReader *sample_reader(void);
/* Check every value of a finished sample stream: 0, or -EINVAL for a difference. */
int sample_check(const DevStateReader *r);
