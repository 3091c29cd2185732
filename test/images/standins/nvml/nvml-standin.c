/*
 * STAND-IN for NVIDIA's NVML (libnvidia-ml.so.1), for the image harness only:
 * it answers the calls Slurm's gpu/nvml plugin makes while slurmd detects its
 * GPUs (gres.conf AutoDetect=nvml) and reports two GPUs, with no GPU, driver
 * or kernel module. It is compiled against the real nvml.h (Debian's
 * libnvidia-ml-dev), so every struct and versioned name is NVML's own.
 *
 * GPU i: "NVIDIA H100 80GB HBM3", minor number i (/dev/nvidia<i>), PCI bus
 * 0000:1<A+i>:00.0, UUID GPU-5...<i>, affine to every online CPU (one socket:
 * slurmctld refuses an affinity that splits a socket).
 * and an H100's supported clocks. Everything else answers
 * NVML_ERROR_NOT_SUPPORTED, as NVML does on GPUs without MIG or NVLink.
 */
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <nvml.h>

#define GPUS 2u

struct standin_gpu { unsigned int index; };
static struct standin_gpu gpus[GPUS] = { { 0 }, { 1 } };
static int initialized;

static int gpu_of(nvmlDevice_t device, unsigned int *index)
{
	struct standin_gpu *gpu = (struct standin_gpu *) device;
	if (gpu < &gpus[0] || gpu >= &gpus[GPUS])
		return 0;
	*index = gpu->index;
	return 1;
}

static nvmlReturn_t copy(char *to, unsigned int length, const char *from)
{
	if (!to)
		return NVML_ERROR_INVALID_ARGUMENT;
	if (strlen(from) + 1 > length)
		return NVML_ERROR_INSUFFICIENT_SIZE;
	strcpy(to, from);
	return NVML_SUCCESS;
}

nvmlReturn_t nvmlInit(void) { initialized = 1; return NVML_SUCCESS; }
nvmlReturn_t nvmlInitWithFlags(unsigned int flags) { (void) flags; return nvmlInit(); }
nvmlReturn_t nvmlShutdown(void) { initialized = 0; return NVML_SUCCESS; }

const char *nvmlErrorString(nvmlReturn_t result)
{
	switch (result) {
	case NVML_SUCCESS: return "Success";
	case NVML_ERROR_UNINITIALIZED: return "Uninitialized";
	case NVML_ERROR_INVALID_ARGUMENT: return "Invalid Argument";
	case NVML_ERROR_NOT_SUPPORTED: return "Not Supported";
	case NVML_ERROR_INSUFFICIENT_SIZE: return "Insufficient Size";
	default: return "Unknown Error (STAND-IN NVML)";
	}
}

nvmlReturn_t nvmlSystemGetDriverVersion(char *version, unsigned int length)
{ return copy(version, length, "550.163.01"); }

nvmlReturn_t nvmlSystemGetNVMLVersion(char *version, unsigned int length)
{ return copy(version, length, "12.550.163.01 (STAND-IN)"); }

nvmlReturn_t nvmlDeviceGetCount(unsigned int *count)
{
	if (!initialized)
		return NVML_ERROR_UNINITIALIZED;
	*count = GPUS;
	return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetHandleByIndex(unsigned int index, nvmlDevice_t *device)
{
	if (!initialized)
		return NVML_ERROR_UNINITIALIZED;
	if (index >= GPUS || !device)
		return NVML_ERROR_INVALID_ARGUMENT;
	*device = (nvmlDevice_t) &gpus[index];
	return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetName(nvmlDevice_t device, char *name, unsigned int length)
{
	unsigned int i;
	if (!gpu_of(device, &i))
		return NVML_ERROR_INVALID_ARGUMENT;
	return copy(name, length, "NVIDIA H100 80GB HBM3");
}

nvmlReturn_t nvmlDeviceGetUUID(nvmlDevice_t device, char *uuid, unsigned int length)
{
	char value[64];
	unsigned int i;
	if (!gpu_of(device, &i))
		return NVML_ERROR_INVALID_ARGUMENT;
	snprintf(value, sizeof(value), "GPU-55555555-0000-4000-8000-00000000000%u", i);
	return copy(uuid, length, value);
}

nvmlReturn_t nvmlDeviceGetPciInfo(nvmlDevice_t device, nvmlPciInfo_t *pci)
{
	unsigned int i;
	if (!gpu_of(device, &i) || !pci)
		return NVML_ERROR_INVALID_ARGUMENT;
	memset(pci, 0, sizeof(*pci));
	pci->domain = 0;
	pci->bus = 0x1a + i;
	pci->device = 0;
	pci->pciDeviceId = 0x233010de;
	snprintf(pci->busIdLegacy, sizeof(pci->busIdLegacy), "0000:%02X:00.0", pci->bus);
	snprintf(pci->busId, sizeof(pci->busId), "00000000:%02X:00.0", pci->bus);
	return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetMinorNumber(nvmlDevice_t device, unsigned int *minor)
{
	unsigned int i;
	if (!gpu_of(device, &i) || !minor)
		return NVML_ERROR_INVALID_ARGUMENT;
	*minor = i;
	return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetCpuAffinity(nvmlDevice_t device, unsigned int size, unsigned long *set)
{
	unsigned int i, cpu, bits = 8 * sizeof(unsigned long);
	long cpus = sysconf(_SC_NPROCESSORS_ONLN);
	if (!gpu_of(device, &i) || !set || size == 0)
		return NVML_ERROR_INVALID_ARGUMENT;
	/* One socket: every GPU is affine to all of its CPUs, as on a one-socket node. */
	memset(set, 0, size * sizeof(unsigned long));
	for (cpu = 0; cpu < (unsigned int) (cpus > 0 ? cpus : 1) && cpu / bits < size; cpu++)
		set[cpu / bits] |= 1UL << (cpu % bits);
	return NVML_SUCCESS;
}

/* An H100 SXM's clocks: one memory clock, some of its graphics clocks (MHz). */
static const unsigned int mem_clocks[] = { 2619 };
static const unsigned int gfx_clocks[] = { 1980, 1755, 1410, 1005, 345 };

static nvmlReturn_t clocks(const unsigned int *list, unsigned int n, unsigned int *count, unsigned int *out)
{
	unsigned int i;
	if (!count)
		return NVML_ERROR_INVALID_ARGUMENT;
	if (*count < n || !out) {
		*count = n;
		return NVML_ERROR_INSUFFICIENT_SIZE;
	}
	for (i = 0; i < n; i++)
		out[i] = list[i];
	*count = n;
	return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetSupportedMemoryClocks(nvmlDevice_t device, unsigned int *count, unsigned int *mhz)
{
	unsigned int i;
	if (!gpu_of(device, &i))
		return NVML_ERROR_INVALID_ARGUMENT;
	return clocks(mem_clocks, sizeof(mem_clocks) / sizeof(*mem_clocks), count, mhz);
}

nvmlReturn_t nvmlDeviceGetSupportedGraphicsClocks(nvmlDevice_t device, unsigned int mem, unsigned int *count, unsigned int *mhz)
{
	unsigned int i;
	if (!gpu_of(device, &i) || mem != mem_clocks[0])
		return NVML_ERROR_INVALID_ARGUMENT;
	return clocks(gfx_clocks, sizeof(gfx_clocks) / sizeof(*gfx_clocks), count, mhz);
}

#define NOT_SUPPORTED(...) { return NVML_ERROR_NOT_SUPPORTED; }
nvmlReturn_t nvmlDeviceGetMigMode(nvmlDevice_t d, unsigned int *c, unsigned int *p) NOT_SUPPORTED()
nvmlReturn_t nvmlDeviceGetMaxMigDeviceCount(nvmlDevice_t d, unsigned int *c) NOT_SUPPORTED()
nvmlReturn_t nvmlDeviceGetMigDeviceHandleByIndex(nvmlDevice_t d, unsigned int i, nvmlDevice_t *m) NOT_SUPPORTED()
nvmlReturn_t nvmlDeviceGetGpuInstanceId(nvmlDevice_t d, unsigned int *i) NOT_SUPPORTED()
nvmlReturn_t nvmlDeviceGetComputeInstanceId(nvmlDevice_t d, unsigned int *i) NOT_SUPPORTED()
nvmlReturn_t nvmlDeviceGetAttributes(nvmlDevice_t d, nvmlDeviceAttributes_t *a) NOT_SUPPORTED()
nvmlReturn_t nvmlDeviceGetNvLinkState(nvmlDevice_t d, unsigned int l, nvmlEnableState_t *a) NOT_SUPPORTED()
nvmlReturn_t nvmlDeviceGetNvLinkRemotePciInfo(nvmlDevice_t d, unsigned int l, nvmlPciInfo_t *p) NOT_SUPPORTED()
nvmlReturn_t nvmlDeviceSetApplicationsClocks(nvmlDevice_t d, unsigned int m, unsigned int g) NOT_SUPPORTED()
nvmlReturn_t nvmlDeviceResetApplicationsClocks(nvmlDevice_t d) NOT_SUPPORTED()
nvmlReturn_t nvmlDeviceGetApplicationsClock(nvmlDevice_t d, nvmlClockType_t t, unsigned int *c) NOT_SUPPORTED()
nvmlReturn_t nvmlDeviceGetProcessUtilization(nvmlDevice_t d, nvmlProcessUtilizationSample_t *u, unsigned int *n, unsigned long long t) NOT_SUPPORTED()
nvmlReturn_t nvmlDeviceGetComputeRunningProcesses(nvmlDevice_t d, unsigned int *n, nvmlProcessInfo_t *p) NOT_SUPPORTED()
nvmlReturn_t nvmlDeviceGetGraphicsRunningProcesses(nvmlDevice_t d, unsigned int *n, nvmlProcessInfo_t *p) NOT_SUPPORTED()
nvmlReturn_t nvmlDeviceGetTotalEnergyConsumption(nvmlDevice_t d, unsigned long long *e) NOT_SUPPORTED()
nvmlReturn_t nvmlDeviceGetUtilizationRates(nvmlDevice_t d, nvmlUtilization_t *u) NOT_SUPPORTED()
nvmlReturn_t nvmlDeviceGetMemoryInfo(nvmlDevice_t d, nvmlMemory_t *m) NOT_SUPPORTED()
