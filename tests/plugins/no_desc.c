/* A shared object without the descriptor: not a Skald plugin. */
int no_desc_answer(void);

int no_desc_answer(void)
{
	return 42;
}
