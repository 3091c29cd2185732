/* STAND-IN for the pyxis SPANK plugin (slinky-containers test fixture):
 * registers --container-image and logs where it is loaded. Runs no containers. */
#include <stddef.h>
#include <slurm/spank.h>

SPANK_PLUGIN(pyxis, 1)

static const char *image;

static int set_image(int val, const char *optarg, int remote)
{
	(void)val;
	(void)remote;
	image = optarg;
	return ESPANK_SUCCESS;
}

static struct spank_option options[] = {
	{ "container-image", "[USER@][REGISTRY#]IMAGE[:TAG]|PATH",
	  "[pyxis STAND-IN] the image to run the job in (accepted, not used)",
	  1, 0, set_image },
	SPANK_OPTIONS_TABLE_END
};

int slurm_spank_init(spank_t sp, int ac, char **av)
{
	(void)ac;
	(void)av;
	for (int i = 0; options[i].name != NULL; i++)
		if (spank_option_register(sp, &options[i]) != ESPANK_SUCCESS)
			return ESPANK_ERROR;
	return ESPANK_SUCCESS;
}

int slurm_spank_init_post_opt(spank_t sp, int ac, char **av)
{
	(void)ac;
	(void)av;
	if (spank_remote(sp))
		slurm_info("pyxis STAND-IN %s loaded (image: %s)", PYXIS_VERSION,
			   image ? image : "none");
	return ESPANK_SUCCESS;
}
