/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <string.h>
#include <unistd.h>

#include <glib.h>

#include "nvme-srv.h"

int nvme_srv_start(NvmeSrv *srv, const NvmeCtrlConfig *cfg, const char *sock) {
        VuServerConfig scfg;
        int r;

        memset(srv, 0, sizeof(*srv));
        r = nvme_ctrl_new(cfg, &srv->c);
        if (r < 0)
                return r;
        r = nvme_pci_config(srv->c, &scfg);
        if (r < 0)
                return r;
        r = vu_server_new(&scfg, &srv->s);
        if (r < 0)
                return r;
        nvme_pci_start(srv->c, srv->s);
        r = vu_server_listen(srv->s, sock);
        if (r < 0)
                return r;
        srv->sock = g_strdup(sock);
        return srv_thread_start(&srv->thread, srv->s);
}

void nvme_srv_stop(NvmeSrv *srv) {
        srv_thread_stop(&srv->thread);
        vu_server_free(srv->s);
        nvme_ctrl_free(srv->c);
        if (srv->sock)
                unlink(srv->sock);
        g_free(srv->sock);
}

static int vmm_read(void *o, uint64_t off, void *buf, size_t len) {
        return vu_client_region_read(((NvmeVmm *) o)->c, VU_PCI_BAR0_REGION, off, buf, (uint32_t) len);
}

static int vmm_write(void *o, uint64_t off, const void *buf, size_t len) {
        return vu_client_region_write(((NvmeVmm *) o)->c, VU_PCI_BAR0_REGION, off, buf, (uint32_t) len, true);
}

static int vmm_wait(void *o, unsigned vector, int timeout_ms) {
        NvmeVmm *v = o;
        if (vector >= v->nvec)
                return -EINVAL;
        return vu_client_wait_irq_or_hangup(v->c, v->irq_fds[vector], timeout_ms);
}

static const NvmeDrvOps vmm_ops = { vmm_read, vmm_write, vmm_wait };

int nvme_vmm_connect(NvmeVmm *v, const char *sock, uint64_t ram_gpa, uint64_t ram_size, unsigned nvec) {
        int r;

        memset(v, 0, sizeof(*v));
        for (unsigned i = 0; i < G_N_ELEMENTS(v->irq_fds); i++)
                v->irq_fds[i] = -1;
        v->ram.fd = -1;
        if ((r = vu_client_connect(sock, &v->c)) < 0 || (r = vu_client_negotiate(v->c, NULL)) < 0)
                return r;
        if ((r = vu_guest_ram_new(ram_gpa, ram_size, &v->ram)) < 0 || (r = vu_client_map_ram(v->c, &v->ram)) < 0)
                return r;
        /* PCI identity as Linux binds it: class 01/08/02, not QEMU's IDs. */
        uint32_t id = 0, cls = 0;
        if ((r = vu_client_region_read(v->c, VU_PCI_CONFIG_REGION, 0, &id, 4)) < 0 ||
            (r = vu_client_region_read(v->c, VU_PCI_CONFIG_REGION, 8, &cls, 4)) < 0)
                return r;
        if ((cls >> 8) != 0x010802 || id == 0x58458086 || id == 0x00101b36)
                return -ENODEV;
        uint16_t cmd = 0x6;     /* memory space + bus master */
        if ((r = vu_client_region_write(v->c, VU_PCI_CONFIG_REGION, 4, &cmd, 2, false)) < 0)
                return r;
        v->nvec = nvec;
        /* A controller without MSI-X offers MSI: use it, as Linux does. */
        r = vu_client_enable_msix(v->c, nvec, v->irq_fds);
        if (r == -ENOENT)
                r = vu_client_enable_msi(v->c, nvec, v->irq_fds);
        if (r < 0)
                return r;
        nvme_drv_init(&v->d, &vmm_ops, v, v->ram.host, ram_gpa, ram_size);
        return 0;
}

void nvme_vmm_disconnect(NvmeVmm *v) {
        if (v->c)
                vu_client_free(v->c);
        v->c = NULL;
        for (unsigned i = 0; i < v->nvec; i++)
                if (v->irq_fds[i] >= 0)
                        close(v->irq_fds[i]);
        if (v->ram.fd >= 0)
                vu_guest_ram_free(&v->ram);
        v->ram.fd = -1;
}
