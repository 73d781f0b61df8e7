/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The VLV_ERROR GError domain. */
#include "vlv.h"

G_DEFINE_QUARK(vlv - error - quark, vlv_error)
